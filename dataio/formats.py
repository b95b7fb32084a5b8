"""One reader and one writer per img2dataset output format, all behind the same small interface.

Readers yield `RawSample`s (bytes as stored, nothing decoded); writers take samples and finish each
shard file under a temporary name, renaming it into place on `close()`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from dataio.atomic import atomic_write, temporary_name

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
PARQUET_BATCH_ROWS = 512


@dataclass
class RawSample:
    """A sample's parts as bytes; `key=None` marks a problem with the shard itself."""

    key: Optional[str]
    image: Optional[bytes] = None
    image_ext: str = "jpg"
    caption: object = None
    meta: object = None
    problem: str = ""


def read_shard(root: Path, fmt: str, shard: str) -> Iterator[RawSample]:
    return {"webdataset": read_tar_shard, "files": read_files_shard, "parquet": read_parquet_shard}[fmt](root, shard)


def split_name(name: str) -> tuple:
    """webdataset's convention: the key is the base name up to its first dot."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext.lower()


def _assemble(key: str, parts: dict) -> RawSample:
    image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in parts), None)
    return RawSample(
        key=key,
        image=parts.get(image_ext) if image_ext else None,
        image_ext=image_ext or "jpg",
        caption=parts.get("txt"),
        meta=parts.get("json"),
    )


def read_tar_shard(root: Path, shard: str) -> Iterator[RawSample]:
    """Stream a tar without extracting: member names are only parsed for keys, never used as paths."""
    path = root / f"{shard}.tar"
    key, parts, count = None, {}, 0
    try:
        with tarfile.open(path, mode="r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                member_key, ext = split_name(member.name)
                if member_key != key and key is not None:
                    yield _assemble(key, parts)
                    count += 1
                    parts = {}
                key = member_key
                data = archive.extractfile(member).read()
                if len(data) != member.size:
                    raise tarfile.ReadError(f"{member.name} has {len(data)} of its {member.size} bytes")
                parts[ext] = data
            # tarfile's stream mode takes a file cut at a header boundary for a complete archive; a whole
            # archive ends with two zero blocks after its last member.
            if path.stat().st_size < archive.offset + 2 * tarfile.BLOCKSIZE:
                raise tarfile.ReadError("no end-of-archive marker")
    except (tarfile.TarError, EOFError, OSError) as error:
        if key is not None:
            yield RawSample(key=key, problem=f"{path.name} ends inside this sample (truncated tar)")
        yield RawSample(key=None, problem=f"{path.name} is truncated or corrupt after {count} samples ({error})")
        return
    if key is not None:
        yield _assemble(key, parts)


def read_files_shard(root: Path, shard: str) -> Iterator[RawSample]:
    folder = root / shard
    grouped: dict = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            key, ext = split_name(entry.name)
            grouped.setdefault(key, {})[ext] = Path(entry.path)
    for key, files in grouped.items():
        try:
            parts = {ext: file.read_bytes() for ext, file in files.items()}
        except OSError as error:
            yield RawSample(key=key, problem=f"cannot read {folder.name}/{key}.*: {error.strerror}")
            continue
        yield _assemble(key, parts)


def read_parquet_shard(root: Path, shard: str) -> Iterator[RawSample]:
    path = root / f"{shard}.parquet"
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        image_column = next(ext for ext in IMAGE_EXTENSIONS if ext in names)
        caption_column = "txt" if "txt" in names else "caption"
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                if row.get("status", "success") != "success":
                    continue  # a failed download: img2dataset keeps the row, there is no sample
                image = row.pop(image_column)
                caption = row.pop("txt", None) if caption_column == "txt" else row.get("caption")
                yield RawSample(key=str(row.get("key")), image=image, image_ext=image_column, caption=caption, meta=row)
    except (OSError, pa.ArrowException) as error:
        yield RawSample(key=None, problem=f"{path.name} is truncated or corrupt ({error})")


def meta_to_json(meta: dict) -> bytes:
    """Indented like img2dataset's sidecars, so a diff against the input shows only real changes."""
    return json.dumps(meta, indent=4, ensure_ascii=False).encode("utf-8")


class TarShardWriter:
    def __init__(self, root: Path, shard: str):
        self.final = root / f"{shard}.tar"
        self.tmp = temporary_name(self.final)
        self.archive = tarfile.open(self.tmp, mode="w", format=tarfile.GNU_FORMAT)

    def write(self, key: str, image: bytes, image_ext: str, caption: str, meta: dict) -> None:
        for ext, data in ((image_ext, image), ("txt", caption.encode("utf-8")), ("json", meta_to_json(meta))):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mode = 0o644
            self.archive.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.archive.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self.archive.close()
        self.tmp.unlink(missing_ok=True)


class FilesShardWriter:
    def __init__(self, root: Path, shard: str):
        self.final = root / shard
        self.tmp = temporary_name(self.final)
        self.tmp.mkdir()

    def write(self, key: str, image: bytes, image_ext: str, caption: str, meta: dict) -> None:
        (self.tmp / f"{key}.{image_ext}").write_bytes(image)
        (self.tmp / f"{key}.txt").write_bytes(caption.encode("utf-8"))
        (self.tmp / f"{key}.json").write_bytes(meta_to_json(meta))

    def close(self) -> None:
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class ParquetShardWriter:
    """The parquet format keeps images, captions and metadata in the shard's one parquet file."""

    def __init__(self, root: Path, shard: str, schema: Optional[pa.Schema]):
        self.final = root / f"{shard}.parquet"
        self.tmp = temporary_name(self.final)
        self.schema = schema
        self.rows: list = []

    def write(self, key: str, image: bytes, image_ext: str, caption: str, meta: dict) -> None:
        row = {**meta, "key": key, image_ext: image}
        if self.schema is not None and "txt" in self.schema.names:
            row["txt"] = caption
        else:
            row["caption"] = caption
        self.rows.append(row)

    def add_rows(self, rows: list) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        write_parquet_atomic(self.rows, self.schema, self.final)

    def abort(self) -> None:
        self.rows = []


def write_parquet_atomic(rows: list, schema: Optional[pa.Schema], final: Path) -> None:
    """Write rows keeping the input's column types; columns the rows add get inferred types."""
    table = table_from_rows(rows, schema)
    atomic_write(final, lambda tmp: pq.write_table(table, tmp))


def table_from_rows(rows: list, schema: Optional[pa.Schema]) -> pa.Table:
    if schema is None:
        return pa.Table.from_pylist(rows)
    names = list(schema.names)
    extra = [name for row in rows for name in row if name not in names]
    extra = list(dict.fromkeys(extra))
    fields = [schema.field(name) for name in names]
    if extra:
        inferred = pa.Table.from_pylist([{name: row.get(name) for name in extra} for row in rows]).schema
        fields += [inferred.field(name) for name in extra]
    full = pa.schema(fields)
    return pa.Table.from_pylist([{name: row.get(name) for name in full.names} for row in rows], schema=full)
