"""Build the built-in demo dataset (laion_subset) the way a LAION subset is made.

The source images (Open Clip Art drawings, or synthetic shapes) are put in a staging folder, listed
in a url+caption parquet, served by `python -m http.server` on 127.0.0.1 and downloaded with
img2dataset, so the result is a genuine img2dataset output folder (NNNNN.tar + NNNNN.parquet +
NNNNN_stats.json). With --inject-swaps a fraction of captions is replaced by the caption of a sample of
another category; the json records `injected` and `original_caption` so that detection can be scored.

Example:
    >>> from demo.build import build_demo
    >>> path = build_demo("/tmp/tiny_demo", n=20, source="synthetic", inject_swaps=0.1)  # doctest: +SKIP
    >>> from dataio.reader import open_dataset
    >>> sum(1 for _ in open_dataset(path).samples())                                     # doctest: +SKIP
    20
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dataio.errors import DataError, UsageError
from dataio.reader import FORMATS
from demo import staging

SOURCES = ("openclipart", "synthetic")
# One img2dataset thread per process: samples then sit in each shard in url-list order, run after run.
THREADS_PER_PROCESS = 1


def build_demo(out, n: Optional[int] = None, image_size: int = 64, seed: int = 0, inject_swaps: float = 0.0,
               source: str = "openclipart", output_format: str = "webdataset", **options) -> Path:
    """Build the demo dataset into `out` and return its path; `options` as for `build`.

    img2dataset starts its workers with multiprocessing's spawn, which re-imports the calling script:
    call this from a script only under `if __name__ == "__main__":` (tests and `python -c` are fine).

    Usage (tests/conftest.py builds its datasets this way):

        path = build_demo("/tmp/shapes", n=50, source="synthetic", overwrite=True)
        sorted(p.name for p in path.iterdir())[:3]   # ['00000.parquet', '00000.tar', '00000_stats.json']
    """
    return build(out, n=n, image_size=image_size, seed=seed, inject_swaps=inject_swaps, source=source,
                 output_format=output_format, **options).path


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
            f"  captions swapped with another category's: {self.injected:,} "
            f"(--inject-swaps {self.settings['inject_swaps']})",
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


def build(out, n: Optional[int] = None, image_size: int = 64, seed: int = 0, inject_swaps: float = 0.0,
          source: str = "openclipart", output_format: str = "webdataset", processes: int = 2,
          samples_per_shard: Optional[int] = None, overwrite: bool = False, cache_dir=None,
          progress: bool = True) -> BuildSummary:
    """Stage, list, serve and download the demo dataset into `out`; return what was built.

    The folder appears at `out` only when complete (built beside it, then renamed). Output is the same
    for the same arguments: same samples under the same keys, captions and image bytes.
    """
    started = time.monotonic()
    _check_options(n, image_size, inject_swaps, source, output_format, processes, samples_per_shard)
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
        injected = inject_swaps_into(rows, inject_swaps, seed)
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
        settings={"seed": seed, "image_size": image_size, "inject_swaps": inject_swaps},
    )


def inject_swaps_into(rows: list, fraction: float, seed: int) -> int:
    """Give round(fraction * len(rows)) rows the captions of a row of another category; return how many.

    Swapped rows get injected=True, original_caption (their own primary caption) and swapped_from (the
    donor's source_id). Donors give their own captions, never ones swapped in earlier.

    Example:
        >>> rows = [{"caption": c, "captions": [c], "category": c, "source_id": c} for c in "abcd"]
        >>> for row in rows: row.update(injected=False, original_caption=None, swapped_from=None)
        >>> inject_swaps_into(rows, 0.5, seed=0)
        2
        >>> all(r["caption"] != r["category"] for r in rows if r["injected"])
        True
    """
    count = round(fraction * len(rows))
    if count == 0:
        return 0
    if len({row["category"] for row in rows}) < 2:
        raise UsageError("--inject-swaps needs samples of at least two categories; increase --n")
    rng = random.Random(f"swaps:{seed}")
    originals = [(row["caption"], list(row["captions"]), row["source_id"]) for row in rows]
    donor_order = rng.sample(range(len(rows)), len(rows))
    used = set()
    for index in sorted(rng.sample(range(len(rows)), count)):
        category = rows[index]["category"]
        # A donor gives its caption once where possible, so a swapped caption is not spread over many images.
        donor = next((d for d in donor_order if d not in used and rows[d]["category"] != category), None)
        while donor is None or rows[donor]["category"] == category:
            donor = rng.randrange(len(rows))
        used.add(donor)
        row = rows[index]
        row["original_caption"] = row["caption"]
        row["caption"], row["captions"], row["swapped_from"] = originals[donor]
        row["injected"] = True
    return count


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


def _check_options(n, image_size, inject_swaps, source, output_format, processes, samples_per_shard) -> None:
    if n is not None and n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    if image_size < 8:
        raise UsageError(f"--image-size must be at least 8 pixels (got {image_size})")
    if not 0.0 <= inject_swaps < 1.0:
        raise UsageError(f"--inject-swaps is a fraction in [0, 1) (got {inject_swaps})")
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
