"""Build the built-in demo dataset (laion_subset) the way a LAION subset is made.

The source images (Open Clip Art drawings, or synthetic shapes) are put in a staging folder, listed
in a url+caption parquet, served by `python -m http.server` on 127.0.0.1 and downloaded with
img2dataset, so the result is a genuine img2dataset output folder (NNNNN.tar + NNNNN.parquet +
NNNNN_stats.json). With --inject-swaps a fraction of captions is replaced with noise of one type (--noise:
another category's captions, another image's of the same category, a caption sharing a keyword, or web
boilerplate). A swap replaces every caption-bearing field (caption, captions, title, description,
keywords, a shape's attributes), so no field a strategy may read still holds the truth; that lives only
in `injected`, `noise`, `original_caption` and `swapped_from` (dataio.truth), for scoring detection.
Clean pairs carry `injected: false` and `noise: null`.

Example:
    >>> from demo.build import build_demo
    >>> path = build_demo("/tmp/tiny_demo", n=20, source="synthetic", inject_swaps=0.1)  # doctest: +SKIP
    >>> from dataio.reader import open_dataset
    >>> sum(1 for _ in open_dataset(path).samples())                                     # doctest: +SKIP
    20
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
import shutil
import signal
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dataio.errors import DataError, UsageError
from dataio.reader import FORMATS
from dataio.truth import TRUTH_FIELDS
from demo import staging

SOURCES = ("openclipart", "synthetic")
# What each --noise type puts in place of a sample's captions.
NOISE_TYPES = {
    "cross-category": "the captions of a sample of another category",
    "within-category": "the captions of another sample of the same category",
    "shared-keyword": "the captions of a sample of another category sharing a caption keyword",
    "boilerplate": "a generic caption of the kind web alt text carries",
}
DEFAULT_NOISE = "cross-category"
# Below 2 % too few pairs are injected to measure detection on a small set; above 40 % noise is the norm.
MIN_INJECT_RATE, MAX_INJECT_RATE = 0.02, 0.4
BOILERPLATE_CAPTIONS = (
    "image", "Untitled", "clip art", "IMG_1234.jpg", "stock photo", "picture", "DSC_0042.JPG", "photo",
    "click to enlarge", "no description available", "thumbnail", "royalty free vector", "untitled-1.png",
)
# Who may give its captions to a sample, per noise type (for the message when too few samples have one).
NOISE_DONORS = {
    "cross-category": "a sample of another category with another caption; needs at least two categories",
    "within-category": "another sample of its own category with another caption",
    "shared-keyword": "a sample of another category with a caption keyword in common",
    "boilerplate": "a generic caption other than its own",
}
# What a swap leaves as it was: the image, where it came from, img2dataset's record of its download (for
# rows read back from a built folder, as bench/detection.py injects them), and the category a probe or
# zero-shot scores the image by (an image label, not caption text). Every other field is caption text or what
# the captions were made from, which multi-caption --caption-fields may read: a swap takes all of them from
# the donor.
IMAGE_FIELDS = ("url", "url_path", "source_id", "source_sha256", "category", "key", "status", "error_message",
                "width", "height", "original_width", "original_height", "exif", "sha256", "md5")
# Synthetic shapes have no keyword list; the colour and shape words of their captions serve instead.
ATTRIBUTE_KEYWORDS = ("color", "shape")
# One img2dataset thread per process: samples then sit in each shard in url-list order, run after run.
THREADS_PER_PROCESS = 1


def build_demo(out, n: Optional[int] = None, image_size: int = 64, seed: int = 0, inject_swaps: float = 0.0,
               source: str = "openclipart", output_format: str = "webdataset", noise: str = DEFAULT_NOISE,
               **options) -> Path:
    """Build the demo dataset into `out` and return its path; `options` as for `build`.

    img2dataset starts its workers with multiprocessing's spawn, which re-imports the calling script:
    call this from a script only under `if __name__ == "__main__":` (tests and `python -c` are fine).

    Usage (tests/conftest.py builds its datasets this way):

        path = build_demo("/tmp/shapes", n=50, source="synthetic", overwrite=True)
        sorted(p.name for p in path.iterdir())[:3]   # ['00000.parquet', '00000.tar', '00000_stats.json']
    """
    return build(out, n=n, image_size=image_size, seed=seed, inject_swaps=inject_swaps, source=source,
                 output_format=output_format, noise=noise, **options).path


@dataclass
class BuildSummary:
    """What a demo build produced, for the closing message."""

    path: Path
    source: str
    output_format: str
    samples: int
    injected: int
    shards: int
    failed_downloads: int
    failed_resizes: int
    left_out: dict
    source_counts: dict
    seconds: float
    bytes_on_disk: int
    settings: dict = field(default_factory=dict)

    def text(self) -> str:
        left_out = ", ".join(f"{count} {reason}" for reason, count in sorted(self.left_out.items())) or "none"
        lines = [
            f"demo-data: {self.samples:,} samples ({self.source}, seed {self.settings['seed']}, "
            f"{self.settings['image_size']} px) in {self.shards} {self.output_format} shards at {self.path}",
            self._noise_line(),
            f"  failed downloads: {self.failed_downloads}, failed resizes: {self.failed_resizes}; "
            f"left out before serving: {left_out}",
        ]
        if self.source_counts:
            counts = self.source_counts
            lines.append(f"  Open Clip Art: {counts['distinct']:,} distinct drawings (by PNG content) among "
                         f"{counts['png_paths']:,} files; {counts['duplicate_content']:,} duplicates, "
                         f"{counts['broken_svg']} unreadable SVGs, {counts['missing_svg']} without SVG")
        lines.append(f"  {self.bytes_on_disk / 1e6:.1f} MB on disk, {self.seconds:.0f} s")
        return "\n".join(lines)

    def _noise_line(self) -> str:
        rate, noise = self.settings["inject_swaps"], self.settings["noise"]
        if not self.injected:
            return f"  noise injected: none (--inject-swaps {rate})"
        return (f"  noise injected: {noise}, {self.injected:,} captions replaced by {NOISE_TYPES[noise]} "
                f"(--inject-swaps {rate})")


def build(out, n: Optional[int] = None, image_size: int = 64, seed: int = 0, inject_swaps: float = 0.0,
          source: str = "openclipart", output_format: str = "webdataset", processes: int = 2,
          samples_per_shard: Optional[int] = None, overwrite: bool = False, cache_dir=None,
          progress: bool = True, noise: str = DEFAULT_NOISE) -> BuildSummary:
    """Stage, list, serve and download the demo dataset into `out`; return what was built.

    The folder appears at `out` only when complete (built beside it, then renamed). Output is the same
    for the same arguments: same samples under the same keys, captions and image bytes.
    """
    started = time.monotonic()
    _check_options(n, image_size, inject_swaps, noise, source, output_format, processes, samples_per_shard)
    out = Path(out).absolute()
    _check_out(out, overwrite)
    candidates, source_counts = staging.candidates(source, n, seed, image_size, cache_dir, progress)
    wanted = min(n or len(candidates), len(candidates))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        staged, left_out = staging.stage(candidates, wanted, work / "web", processes, progress, image_size)
        if not staged:
            raise DataError(f"no {source} image could be prepared ({left_out}); nothing to download")
        rows = [staging.row_for(item) for item in staged]
        injected = inject_swaps_into(rows, inject_swaps, seed, noise)
        shard_size = samples_per_shard or _auto_shard_size(len(rows))
        download_dir = work / "download"
        with staging.serving(work / "web", work / "server.log") as base_url:
            for row in rows:
                row["url"] = base_url + urllib.parse.quote(row.pop("url_path"))
            url_list = staging.write_url_list(rows, work / "urls.parquet")
            _download(url_list, download_dir, rows, output_format, image_size, shard_size,
                      processes=max(1, min(processes, math.ceil(len(rows) / shard_size))))
        outcome = staging.check_download(download_dir, len(rows))
        if out.exists():
            out.rename(work / "previous")
        download_dir.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildSummary(
        path=out, source=source, output_format=output_format, samples=outcome["samples"], injected=injected,
        shards=outcome["shards"], failed_downloads=outcome["failed_to_download"],
        failed_resizes=outcome["failed_to_resize"], left_out=left_out, source_counts=source_counts,
        seconds=time.monotonic() - started, bytes_on_disk=_folder_size(out),
        settings={"seed": seed, "image_size": image_size, "inject_swaps": inject_swaps, "noise": noise},
    )


def inject_swaps_into(rows: list, fraction: float, seed: int, noise: str = DEFAULT_NOISE) -> int:
    """Give round(fraction * len(rows)) rows the captions of `noise` (a NOISE_TYPES name); return how many.

    Replaced rows take every caption-bearing field (all but IMAGE_FIELDS and the truth fields) from the
    donor; boilerplate, which has no donor, sets caption and captions to its text and the others to None.
    They get injected=True, noise=<the type>, original_caption (their own primary caption) and
    swapped_from (the donor's source_id; None for boilerplate). Donors give their own captions, never ones
    swapped in earlier, and never a caption equal to the row's own. Rows that no donor suits are passed
    over for rows that one does; UsageError when too few rows are left. Same seed, same result.

    Example:
        >>> rows = [{"caption": f"{c} {i}", "captions": [f"{c} {i}"], "category": c, "source_id": f"{c}{i}"}
        ...         for c in "ab" for i in range(3)]
        >>> inject_swaps_into(rows, 0.5, seed=0, noise="within-category")
        3
        >>> [(r["original_caption"], r["caption"], r["noise"]) for r in rows if r.get("injected")]
        [('a 1', 'a 2', 'within-category'), ('a 2', 'a 0', 'within-category'), ('b 1', 'b 2', 'within-category')]
    """
    count = round(fraction * len(rows))
    if count == 0:
        return 0
    pools = _donor_pools(rows, noise)
    own_keys = [_caption_key(row["caption"]) for row in rows]
    eligible = [i for i, pool in enumerate(pools) if any(key != own_keys[i] for key in pool)]
    if len(eligible) < count:
        raise UsageError(f"--noise {noise}: only {len(eligible)} of {len(rows)} samples have a donor "
                         f"({NOISE_DONORS[noise]}) but --inject-swaps asks for {count}; lower --inject-swaps, "
                         "raise --n or choose another --noise")
    rng = random.Random(f"swaps:{seed}")
    times_given = Counter()
    for index in sorted(rng.sample(eligible, count)):
        donor_id, fields = _draw_replacement(pools[index], own_keys[index], times_given, rng)
        row = rows[index]
        original = row["caption"]
        for name in set(caption_bearing(row)) | set(fields):
            row[name] = copy.deepcopy(fields.get(name))
        row.update(original_caption=original, swapped_from=donor_id, injected=True, noise=noise)
    return count


def caption_bearing(row: dict) -> list:
    """The row's fields a swap replaces: all but the image's own (IMAGE_FIELDS) and the truth fields.

    >>> caption_bearing({"caption": "a", "captions": ["a"], "title": "A", "category": "x", "injected": False})
    ['caption', 'captions', 'title']
    """
    return [name for name in row if name not in IMAGE_FIELDS and name not in TRUTH_FIELDS]


def caption_keywords(row: dict) -> frozenset:
    """The row's keywords that its captions show, lower-cased (for synthetic shapes: colour and shape).

    Only keywords a caption shows count, so upload junk kept in the keyword list ("hash") links nothing.

    Example:
        >>> sorted(caption_keywords({"captions": ["Kite. bird, flying"], "keywords": ["Bird", "hash", "flying"]}))
        ['bird', 'flying']
        >>> sorted(caption_keywords({"captions": ["a red circle"], "color": "red", "shape": "circle"}))
        ['circle', 'red']
    """
    listed = row.get("keywords")
    if listed is None:
        listed = [row[name] for name in ATTRIBUTE_KEYWORDS if row.get(name)]
    text = " | ".join(_caption_key(caption) for caption in row["captions"])
    words = {_caption_key(keyword.replace("_", " ")) for keyword in listed}
    return frozenset(w for w in words if w and re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text))


def _donor_pools(rows: list, noise: str) -> list:
    """Per row, the replacements `noise` allows it: {caption key: [(source_id, caption-bearing fields), ...]}.

    Grouped by distinct caption so that a donor is drawn caption first: one caption on 1,359 images is
    then no likelier to be swapped in than a caption on one. Rows of the same category (and keywords)
    share one pool; a pool still holds the row's own caption, which the draw leaves out.
    """
    if noise == "boilerplate":
        pool = _group_by_caption((_caption_key(text), (None, {"caption": text, "captions": [text]}))
                                 for text in BOILERPLATE_CAPTIONS)
        return [pool] * len(rows)
    # Copied now: a donor gives the fields it had before any swap, whatever is swapped into it later.
    offers = [(row["source_id"], copy.deepcopy({name: row[name] for name in caption_bearing(row)})) for row in rows]
    caption_keys = [_caption_key(row["caption"]) for row in rows]
    categories = [row["category"] for row in rows]
    same_category = noise == "within-category"
    if noise == "shared-keyword":
        keywords = [caption_keywords(row) for row in rows]
        profiles = list(zip(categories, keywords))
        rows_with = _rows_by_keyword(keywords)
    else:
        profiles = categories

    def candidates(i: int):
        if noise == "shared-keyword":
            return sorted({j for word in keywords[i] for j in rows_with[word]})
        return range(len(rows))

    pools = {}
    for i, profile in enumerate(profiles):
        if profile not in pools:
            admitted = (j for j in candidates(i) if (categories[j] == categories[i]) == same_category)
            pools[profile] = _group_by_caption((caption_keys[j], offers[j]) for j in admitted)
    return [pools[profile] for profile in profiles]


def _rows_by_keyword(keywords: list) -> dict:
    rows_with = {}
    for row_index, words in enumerate(keywords):
        for word in words:
            rows_with.setdefault(word, []).append(row_index)
    return rows_with


def _group_by_caption(keyed_offers) -> dict:
    """{caption key: the offers whose primary caption it is} from (caption key, offer) pairs."""
    groups = {}
    for key, offer in keyed_offers:
        groups.setdefault(key, []).append(offer)
    return groups


def _draw_replacement(pool: dict, own_key: str, times_given: Counter, rng: random.Random) -> tuple:
    """A distinct caption uniformly among those given least so far, then one of its carriers.

    Least given first spreads a swapped-in caption over as few images as the pool allows.
    """
    least_given = [key for key in pool if key not in times_given and key != own_key]  # quick while any is unused
    if not least_given:
        keys = [key for key in pool if key != own_key]
        fewest = min(times_given[key] for key in keys)
        least_given = [key for key in keys if times_given[key] == fewest]
    key = rng.choice(least_given)
    times_given[key] += 1
    return rng.choice(pool[key])


def _caption_key(caption: str) -> str:
    """Captions differing only in case or spacing are one caption."""
    return " ".join(caption.lower().split())


def _download(url_list: Path, download_dir: Path, rows: list, output_format: str, image_size: int,
              shard_size: int, processes: int) -> None:
    """Run img2dataset on the url list; its SIGINT handler (exit code 0) is undone afterwards."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no update check over the network per process
    from img2dataset import download

    extra_columns = [name for name in rows[0] if name not in ("url", "caption")]
    previous_handler = signal.getsignal(signal.SIGINT)
    try:
        download(
            url_list=str(url_list), input_format="parquet", url_col="url", caption_col="caption",
            save_additional_columns=extra_columns, output_folder=str(download_dir), output_format=output_format,
            image_size=image_size, resize_mode="border", encode_format="jpg", encode_quality=95,
            number_sample_per_shard=shard_size, processes_count=processes, thread_count=THREADS_PER_PROCESS,
            timeout=10, retries=2, enable_wandb=False, distributor="multiprocessing",
        )
    except SystemExit as stop:  # img2dataset turns Ctrl-C into sys.exit(0); report it as an interrupt
        raise KeyboardInterrupt from stop
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def _check_options(n, image_size, inject_swaps, noise, source, output_format, processes,
                   samples_per_shard) -> None:
    if n is not None and n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    if image_size < 8:
        raise UsageError(f"--image-size must be at least 8 pixels (got {image_size})")
    if inject_swaps != 0 and not MIN_INJECT_RATE <= inject_swaps <= MAX_INJECT_RATE:
        raise UsageError(f"--inject-swaps must be 0 (no noise) or a fraction from {MIN_INJECT_RATE} to "
                         f"{MAX_INJECT_RATE} (got {inject_swaps})")
    if noise not in NOISE_TYPES:
        raise UsageError(f"--noise must be one of {', '.join(NOISE_TYPES)} (got {noise!r})")
    if source not in SOURCES:
        raise UsageError(f"--source must be one of {', '.join(SOURCES)} (got {source!r})")
    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {output_format!r})")
    if processes < 1:
        raise UsageError(f"--processes must be at least 1 (got {processes})")
    if samples_per_shard is not None and samples_per_shard < 1:
        raise UsageError(f"--shard-size must be at least 1 (got {samples_per_shard})")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder path for --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace it or choose another --out")


def _auto_shard_size(samples: int) -> int:
    """About four shards for small sets (so shard-by-shard code is exercised), at most 1000 per shard."""
    return max(50, min(1000, math.ceil(samples / 4)))


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
