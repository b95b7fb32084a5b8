"""Read img2dataset output folders (webdataset, parquet or files format) one shard at a time.

Example (a one-shard webdataset written by hand; the second sample's image is empty):
    >>> import io, tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from dataio.formats import TarShardWriter
    >>> folder, png = Path(tempfile.mkdtemp()), io.BytesIO()
    >>> Image.new("RGB", (8, 8), "red").save(png, "PNG")
    >>> shard = TarShardWriter(folder, "00000")
    >>> shard.write("000000000", png.getvalue(), "png", "a red square", {"key": "000000000"})
    >>> shard.write("000000001", b"", "png", "nothing to see", {"key": "000000001"})
    >>> shard.close()
    >>> ds = open_dataset(folder)
    >>> ds.format, [(s.key, s.caption) for s in ds.samples()]
    ('webdataset', [('000000000', 'a red square')])
    >>> ds.skipped
    [('000000001', 'zero-byte image')]
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import pyarrow.parquet as pq
from PIL import Image

from dataio import formats
from dataio.errors import DataError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
FORMATS = ("webdataset", "parquet", "files")
# why a sample is unreadable, in the words of the manifest (the writer's range copy gives the same words)
NO_IMAGE = "no image file"
EMPTY_IMAGE = "zero-byte image"
NO_CAPTION = "missing caption (.txt)"
CAPTION_NOT_UTF8 = "caption is not valid UTF-8"
_SHARD_NAME = re.compile(r"^(\d+)$")


@dataclass(frozen=True)
class Sample:
    """One image-caption pair as img2dataset stored it."""

    key: str
    image: bytes
    image_ext: str
    caption: str
    captions: list
    meta: dict
    shard: str
    # a tar sample's members as stored, (name, ext, bytes), when the reader was asked to keep them:
    # the writer copies an unchanged sample's blocks instead of re-serializing it
    stored: Optional[tuple] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Unreadable:
    """A sample (or the rest of a shard) that could not be read, and why."""

    key: str
    reason: str
    shard: str


@dataclass
class Dataset:
    """An img2dataset output folder. Iterate with `samples()`; bad samples land in `skipped`."""

    path: Path
    format: str
    shards: list
    skipped: list = field(default_factory=list)

    def samples(self, keys: Iterable[str] | None = None, verify_images: bool = True) -> Iterator[Sample]:
        """Stream samples shard by shard; unreadable ones are recorded in `self.skipped`, not yielded."""
        for record in self.records(keys=keys, verify_images=verify_images):
            if isinstance(record, Unreadable):
                self.skipped.append((record.key, record.reason))
            else:
                yield record

    def records(self, keys: Iterable[str] | None = None, verify_images: bool = True) -> Iterator[Union[Sample, Unreadable]]:
        """Stream every sample and every unreadable entry, in shard order. Duplicate keys count as unreadable."""
        wanted = set(keys) if keys is not None else None
        seen: dict[str, str] = {}
        for shard in self.shards:
            for record in without_duplicates(self.shard_records(shard, verify_images=verify_images), seen):
                if wanted is None or record.key in wanted:
                    yield record

    def shard_records(self, shard: str, verify_images: bool = True, metadata=None,
                      keep_stored: bool = False) -> Iterator[Union[Sample, Unreadable]]:
        """One shard's samples and unreadable entries; keys that the metadata lists but the shard lacks count too.

        `metadata`: the shard's table from `metadata(shard)`, when the caller has read it already.
        `keep_stored`: tar samples also carry their members as stored (`Sample.stored`), for a byte-exact copy.
        """
        listed = success_keys(metadata if metadata is not None else self.metadata(shard))
        found = set()
        shard_problem = ""
        for raw in formats.read_shard(self.path, self.format, shard, keep_stored):
            if raw.key is None:
                shard_problem = raw.problem
                continue
            found.add(raw.key)
            yield _to_record(raw, shard, verify_images)
        missing = listed_but_missing(listed, found, shard, shard_problem)
        yield from missing
        if shard_problem and not missing:
            yield Unreadable(f"{shard} (shard)", shard_problem, shard)

    def metadata(self, shard: str):
        """The shard's NNNNN.parquet as a pyarrow Table, without image bytes (None if the file is absent)."""
        path = self.path / f"{shard}.parquet"
        if not path.exists():
            return None
        try:
            # ParquetFile reads one file directly; read_table goes through the dataset layer, at ~5x the CPU
            with pq.ParquetFile(path) as parquet:
                columns = [name for name in parquet.schema_arrow.names if name not in IMAGE_EXTENSIONS]
                return parquet.read(columns=columns)
        except Exception as error:  # pyarrow raises several types for damaged files
            raise DataError(f"{path}: cannot read the metadata parquet ({error}); re-download this shard") from None

    def listed_success_keys(self, shard: str) -> set:
        return success_keys(self.metadata(shard))

    def stats(self, shard: str) -> dict:
        """The shard's NNNNN_stats.json as img2dataset wrote it ({} if absent or unreadable)."""
        path = self.path / f"{shard}_stats.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}


def listed_but_missing(listed: set, found: set, shard: str, shard_problem: str = "") -> list:
    """An Unreadable for each key the shard's metadata lists as downloaded that its samples lack."""
    because = f": {shard_problem}" if shard_problem else ""
    return [Unreadable(key, f"listed as downloaded in {shard}.parquet but missing from the shard{because}", shard)
            for key in sorted(listed - found)]


def success_keys(metadata) -> set:
    """Keys a shard's metadata table lists as downloaded (empty without a table or its columns)."""
    return set(success_row_of_key(metadata))


def success_row_of_key(metadata) -> dict:
    """Key -> index of its first downloaded row (empty without a table or its key and status columns)."""
    if metadata is None or "key" not in metadata.column_names or "status" not in metadata.column_names:
        return {}
    row_of_key: dict = {}
    statuses = metadata.column("status").to_pylist()
    for index, key in enumerate(metadata.column("key").to_pylist()):
        if statuses[index] == "success":
            row_of_key.setdefault(key, index)
    return row_of_key


def duplicate_key(first_shard: str) -> str:
    """Why a key already read from an earlier shard is unreadable the second time."""
    return f"duplicate key (first seen in shard {first_shard})"


def without_duplicates(records: Iterable, seen: dict) -> Iterator[Union[Sample, Unreadable]]:
    """Pass records through; a key already in `seen` (key -> shard) becomes an Unreadable naming the first shard."""
    for record in records:
        if isinstance(record, Sample):
            if record.key in seen:
                yield Unreadable(record.key, duplicate_key(seen[record.key]), record.shard)
                continue
            seen[record.key] = record.shard
        yield record


def open_dataset(path: Union[str, Path]) -> Dataset:
    """Open an img2dataset output folder, detecting its format from the files in it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder; give the img2dataset output folder (e.g. --data laion_subset)")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; give the img2dataset output folder, not a file in it")
    names = sorted(p.name for p in path.iterdir())
    if not names:
        raise DataError(f"{path}: the folder is empty; run img2dataset (or `python cli.py demo-data`) into it first")
    fmt, shards = detect_format(path, names)
    return Dataset(path=path, format=fmt, shards=shards)


def detect_format(path: Path, names: list) -> tuple:
    tars = [n[:-4] for n in names if n.endswith(".tar") and _SHARD_NAME.match(n[:-4])]
    if tars:
        return "webdataset", tars
    folders = [n for n in names if _SHARD_NAME.match(n) and (path / n).is_dir()]
    if folders:
        return "files", folders
    parquets = [n[:-8] for n in names if n.endswith(".parquet") and _SHARD_NAME.match(n[:-8])]
    with_images = [s for s in parquets if _parquet_has_images(path / f"{s}.parquet")]
    if with_images:
        return "parquet", with_images
    if parquets:
        raise DataError(
            f"{path}: has metadata parquets but no images (no NNNNN.tar, NNNNN/ or image column); "
            "did img2dataset download anything? check the NNNNN_stats.json files"
        )
    raise DataError(
        f"{path}: not an img2dataset output folder (expected NNNNN.tar, NNNNN/ or NNNNN.parquet shards)"
    )


def _parquet_has_images(path: Path) -> bool:
    try:
        return any(name in IMAGE_EXTENSIONS for name in pq.read_schema(path).names)
    except Exception:
        raise DataError(f"{path}: not a readable parquet file; re-download this shard or remove it") from None


def _to_record(raw: "formats.RawSample", shard: str, verify_images: bool) -> Union[Sample, Unreadable]:
    if raw.problem:
        return Unreadable(raw.key, raw.problem, shard)
    if raw.image is None:
        return Unreadable(raw.key, NO_IMAGE, shard)
    if len(raw.image) == 0:
        return Unreadable(raw.key, EMPTY_IMAGE, shard)
    if verify_images and not image_is_decodable(raw.image):
        return Unreadable(raw.key, "corrupt image (cannot be decoded)", shard)
    if raw.caption is None:
        return Unreadable(raw.key, NO_CAPTION, shard)
    try:
        caption = raw.caption.decode("utf-8") if isinstance(raw.caption, bytes) else raw.caption
    except UnicodeDecodeError:
        return Unreadable(raw.key, CAPTION_NOT_UTF8, shard)
    try:
        meta = parse_meta(raw.meta)
    except ValueError as error:
        return Unreadable(raw.key, unreadable_json(error), shard)
    return Sample(
        key=raw.key,
        image=raw.image,
        image_ext=raw.image_ext,
        caption=caption,
        captions=caption_list(caption, meta.get("captions")),
        meta=meta,
        shard=shard,
        stored=raw.stored,
    )


def image_is_decodable(data: bytes) -> bool:
    """Fully decode the image: header checks alone miss truncated JPEG data."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:  # PIL raises many types for damaged files
        return False


def unreadable_json(error: ValueError) -> str:
    return f"unreadable json ({error})"


def parse_meta(meta) -> dict:
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return meta
    text = meta.decode("utf-8") if isinstance(meta, bytes) else meta
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    return parsed


def caption_list(primary: str, extra) -> list:
    """All captions of a sample, the primary one first, each once."""
    captions = [primary]
    if isinstance(extra, (list, tuple)):
        captions += [c for c in extra if isinstance(c, str) and c.strip() and c != primary]
    return list(dict.fromkeys(captions))
