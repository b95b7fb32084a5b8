"""One reader and one writer per img2dataset output format, all behind the same small interface.

Readers yield `RawSample`s (bytes as stored, nothing decoded); writers take samples and finish each
shard file under a temporary name, renaming it into place on `close()`. The tar reader parses 512-byte
blocks itself and can hand over each member exactly as stored, so the tar writer copies kept members
byte for byte (pax and long-name entries included) and serializes only what changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from dataio.atomic import atomic_write, temporary_name
from dataio.errors import DataError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
PARQUET_BATCH_ROWS = 512
BLOCKSIZE = tarfile.BLOCKSIZE
ZERO_BLOCK = bytes(BLOCKSIZE)
TAR_WINDOW = TAR_WRITE_BUFFER = 1 << 20
TAR_COPY_CHUNK = 8 << 20  # a range copied without the kernel's help, read this much at a time
CHECKSUM_FIELD_AS_SPACES = 8 * ord(" ")
# entries that describe the member after them (GNU long names, pax records) or the archive (global pax)
EXTENSION_TYPES = frozenset((tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                             tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE))
REGULAR_TYPES = frozenset(tarfile.REGULAR_TYPES)
DATALESS_TYPES = frozenset(tarfile.SUPPORTED_TYPES) - REGULAR_TYPES - EXTENSION_TYPES  # links, folders, devices
_PAX_NAME_OR_SIZE = re.compile(rb"\d+ (?:path|size)=")
_HEADER_FIELDS = struct.Struct("100s24x12s12x8sc")  # name, size, checksum, type
CAPTION_EXTENSIONS = ("txt", "json")  # the members a changed sample gets anew


@dataclass
class RawSample:
    """A sample's parts as bytes; `key=None` marks a problem with the shard itself."""

    key: Optional[str]
    image: Optional[bytes] = None
    image_ext: str = "jpg"
    caption: object = None
    meta: object = None
    problem: str = ""
    # tar shards only, when asked: each member as stored, (name, ext, bytes), for a byte-exact copy
    stored: Optional[tuple] = None


def read_shard(root: Path, fmt: str, shard: str, keep_stored: bool = False) -> Iterator[RawSample]:
    """keep_stored: tar shards also give each sample's members as stored (other formats ignore it)."""
    if fmt == "webdataset":
        return read_tar_shard(root, shard, keep_stored)
    return {"files": read_files_shard, "parquet": read_parquet_shard}[fmt](root, shard)


def split_name(name: str) -> tuple:
    """webdataset's convention: the key is the base name up to its first dot."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext.lower()


def _assemble(key: str, parts: dict, stored: Optional[tuple] = None) -> RawSample:
    image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in parts), None)
    return RawSample(
        key=key,
        image=parts.get(image_ext) if image_ext else None,
        image_ext=image_ext or "jpg",
        caption=parts.get("txt"),
        meta=parts.get("json"),
        stored=stored,
    )


def read_tar_shard(root: Path, shard: str, keep_stored: bool = False) -> Iterator[RawSample]:
    """Stream a tar block by block: member names are only parsed for keys, never used as paths.

    keep_stored: also give each sample its members as stored (`RawSample.stored`), for a byte-exact copy.
    """
    path = root / f"{shard}.tar"
    key, parts, stored, count = None, {}, [], 0
    try:
        with open(path, "rb") as stream:
            for name, data, member in tar_members(stream):
                member_key, ext = split_name(name)
                if member_key != key and key is not None:
                    yield _assemble(key, parts, tuple(stored) if keep_stored else None)
                    count += 1
                    parts, stored = {}, []
                key = member_key
                parts[ext] = data
                if keep_stored:
                    stored.append((name, ext, member))
    except (tarfile.TarError, OSError) as error:
        if key is not None:
            yield RawSample(key=key, problem=f"{path.name} ends inside this sample (truncated tar)")
        yield RawSample(key=None, problem=f"{path.name} is truncated or corrupt after {count} samples ({error})")
        return
    if key is not None:
        yield _assemble(key, parts, tuple(stored) if keep_stored else None)


def tar_members(stream) -> Iterator[tuple]:
    """(name, data, stored) for each regular file of a tar stream, parsed block by block from a window.

    `stored` is the member exactly as it is in the stream: the GNU long-name and pax entries that
    describe it, its header, its data and the padding to a whole block, so a writer can copy it
    without re-serializing. Raises tarfile.ReadError where tarfile would fail or, in stream mode, stop
    short: a damaged header, a member shorter than its size, an archive without its end-of-archive
    blocks (a cut at a member boundary). Global pax headers (archive-wide comments and times) are read
    past, not kept. Memory holds one window (TAR_WINDOW, or one member if larger), not the archive.

    >>> import io, tarfile
    >>> buffer = io.BytesIO()
    >>> with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
    ...     info = tarfile.TarInfo("k" * 120 + ".txt"); info.size = 5
    ...     archive.addfile(info, io.BytesIO(b"hello"))
    >>> [(len(name), data, len(stored)) for name, data, stored in tar_members(io.BytesIO(buffer.getvalue()))]
    [(124, b'hello', 2048)]
    """
    read = stream.read
    window, position = b"", 0  # `position`: where the next header starts in `window`
    member_start = None  # where the member being read starts in `window`, at its first long-name or pax entry
    long_name, pax = None, {}
    while True:
        if position + BLOCKSIZE > len(window):
            keep_from = position if member_start is None else member_start
            window, shift = _slide(window, keep_from, position + BLOCKSIZE, read)
            position, member_start = position - shift, None if member_start is None else member_start - shift
            if position + BLOCKSIZE > len(window):
                raise tarfile.ReadError("truncated header" if position < len(window) else "no end-of-archive marker")
        if window[position] == 0 and window[position:position + BLOCKSIZE] == ZERO_BLOCK:
            # an archive ends with two zero blocks; fewer means it was cut
            if len(window) - position + len(read(BLOCKSIZE)) < 2 * BLOCKSIZE:
                raise tarfile.ReadError("no end-of-archive marker")
            return
        name, size, kind = parse_header(window, position)
        if kind in DATALESS_TYPES:
            size = 0  # tarfile's rule: links, folders and devices have no data blocks whatever their size says
        elif pax and kind not in EXTENSION_TYPES:
            size = _pax_size(pax, size)
        data_start = position + BLOCKSIZE
        end = data_start + size + (-size % BLOCKSIZE)
        if end > len(window):
            start = position if member_start is None else member_start
            window, shift = _slide(window, start, end, read)
            position, data_start, end = position - shift, data_start - shift, end - shift
            member_start = None if member_start is None else member_start - shift
            if end > len(window):
                raise tarfile.ReadError(_cut_inside(name, size, len(window) - data_start))
        if kind in EXTENSION_TYPES:
            if kind != tarfile.XGLTYPE:
                data = window[data_start:data_start + size]
                if kind == tarfile.GNUTYPE_LONGNAME:
                    long_name = _c_bytes(data)
                elif kind != tarfile.GNUTYPE_LONGLINK and _PAX_NAME_OR_SIZE.search(data):
                    pax.update(pax_fields(data))  # other records hold times and owners, which no reader needs
                member_start = position if member_start is None else member_start
            position = end
            continue
        if kind == tarfile.GNUTYPE_SPARSE:
            raise tarfile.ReadError(f"{_text(name)} is a GNU sparse member, which this reader does not support")
        name = pax.get("path") or (long_name or _c_bytes(name)).decode("utf-8", "surrogateescape")
        if kind in REGULAR_TYPES and not (kind == tarfile.AREGTYPE and name.endswith("/")):
            stored = window[position if member_start is None else member_start:end]
            yield name, window[data_start:data_start + size], stored
        position, member_start, long_name, pax = end, None, None, {}


def _slide(window: bytes, keep_from: int, end: int, read) -> tuple:
    """The window from `keep_from` on, read on far enough to hold offset `end` of the old one (less at
    the end of the stream); and how far offsets shift."""
    return window[keep_from:] + read(max(TAR_WINDOW, end - len(window))), keep_from


def _cut_inside(name, size: int, available: int) -> str:
    if available < size:
        return f"{_text(name)} has {max(available, 0)} of its {size} bytes"
    return f"the archive ends inside the padding after {_text(name)}"


def parse_header(buffer: bytes, offset: int = 0) -> tuple:
    """Name, size and type of the 512-byte header block at `offset`, with its checksum verified.

    The name is bytes, perhaps NUL-padded (cut it at the first NUL), to spare that work for the pax
    and long-name entries, whose own names no one reads.

    Common headers (octal numbers, no ustar name prefix, unsigned checksum) are read here at a fraction
    of `tarfile.TarInfo.frombuf`'s cost; it reads the rest and raises on a damaged header.
    """
    name, size_field, checksum_field, kind = _HEADER_FIELDS.unpack_from(buffer, offset)
    if buffer[offset + 345] == 0:
        try:
            size = int(size_field.split(b"\0", 1)[0], 8)
            stored_checksum = int(checksum_field.split(b"\0", 1)[0], 8)
        except ValueError:  # an empty, base-256 or damaged field: tarfile decides
            stored_checksum = size = -1
        if size >= 0 and stored_checksum == unsigned_checksum(buffer, offset):
            return name, size, kind
    info = tarfile.TarInfo.frombuf(buffer[offset:offset + BLOCKSIZE], "utf-8", "surrogateescape")
    return info.name.encode("utf-8", "surrogateescape"), info.size, info.type


def unsigned_checksum(buffer: bytes, offset: int = 0) -> int:
    """A tar header's checksum: the sum of its block's bytes, the checksum field counted as 8 spaces.

    Adler-32's low 16 bits are 1 + the byte sum modulo 65521; a 256-byte half sums to at most 65,280,
    so the modulo never applies and two halves give the exact sum at C speed.

    >>> import tarfile
    >>> blocks = [bytes(range(256)) * 2, bytes([255]) * 512, bytes(512)]
    >>> [unsigned_checksum(block) == tarfile.calc_chksums(block)[0] for block in blocks]
    [True, True, True]
    """
    middle, end = offset + 256, offset + BLOCKSIZE
    byte_sum = (zlib.adler32(buffer[offset:middle]) & 0xFFFF) + (zlib.adler32(buffer[middle:end]) & 0xFFFF) - 2
    return byte_sum - sum(buffer[offset + 148:offset + 156]) + CHECKSUM_FIELD_AS_SPACES


def pax_fields(data: bytes) -> dict:
    """The keyword=value records of a pax extended header ("%d %s=%s\\n", the length counting all of it)."""
    fields, position = {}, 0
    try:
        while position < len(data) and data[position] != 0:
            space = data.index(b" ", position)
            length = int(data[position:space])
            if length <= space - position:
                raise ValueError(f"record length {length}")
            keyword, _, value = data[space + 1:position + length - 1].partition(b"=")
            fields[keyword.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
            position += length
    except ValueError as error:
        raise tarfile.ReadError(f"damaged pax header ({error})") from None
    return fields


def _pax_size(pax: dict, size: int) -> int:
    if "size" not in pax:
        return size
    try:
        return int(pax["size"])
    except ValueError:
        raise tarfile.ReadError(f"damaged pax header (size {pax['size']!r})") from None


def _text(name) -> str:
    return _c_bytes(name).decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def _c_bytes(field: bytes) -> bytes:
    """A NUL-terminated header field's bytes before the NUL."""
    end = field.find(0)
    return field if end < 0 else field[:end]


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
    """A webdataset shard: new members serialized as tarfile would (GNU format), kept ones copied as stored.

    Every writer has `write(key, image, image_ext, caption, meta)`, for a sample serialized anew, and
    `write_sample(sample, caption, meta, changed)`, for a sample read from a shard of the same format.
    """

    def __init__(self, root: Path, shard: str):
        self.final = root / f"{shard}.tar"
        self.tmp = temporary_name(self.final)
        self.stream = open(self.tmp, "wb", buffering=TAR_WRITE_BUFFER)
        self.kernel_copy = hasattr(os, "copy_file_range")

    def write(self, key: str, image: bytes, image_ext: str, caption: str, meta: dict) -> None:
        self._add(f"{key}.{image_ext}", image)
        self._add_caption_members(key, caption, meta)

    def write_sample(self, sample, caption: str, meta: dict, changed: bool) -> None:
        """An unchanged sample's members are copied block for block; a changed one keeps its stored image
        (and any other) members and gets a new .txt and .json."""
        if sample.stored is None:
            self.write(sample.key, sample.image, sample.image_ext, caption, meta)
            return
        for _, ext, stored in sample.stored:
            if not changed or ext not in CAPTION_EXTENSIONS:
                self.stream.write(stored)
        if changed:
            self._add_caption_members(member_stem(sample.stored[0][0]), caption, meta)

    def write_stored(self, data) -> None:
        """Bytes copied as they are from a shard: whole entries (headers, data, padding), never a part."""
        self.stream.write(data)

    def copy_range(self, source, offset: int, length: int) -> None:
        """`length` bytes at `offset` of the open shard file `source` (whole entries: headers, data, padding),
        copied inside the kernel where it can (os.copy_file_range: no pass through this process's memory),
        else read and written in chunks."""
        end = offset + length
        if self.kernel_copy and offset < end:
            self.stream.flush()
            try:
                while offset < end:
                    done = os.copy_file_range(source.fileno(), self.stream.fileno(), end - offset, offset)
                    if done == 0:
                        break  # the source is shorter than its index said: the reads below report it
                    offset += done
            except OSError:  # no such call for these files (another filesystem, an old kernel)
                self.kernel_copy = False
            self.stream.seek(0, os.SEEK_END)
        while offset < end:
            chunk = os.pread(source.fileno(), min(end - offset, TAR_COPY_CHUNK), offset)
            if not chunk:
                raise DataError(f"{source.name}: ended at byte {offset} while {end - offset} more were being "
                                "copied; was it changed during the rewrite? Run again")
            self.stream.write(chunk)
            offset += len(chunk)

    def _add_caption_members(self, stem: str, caption: str, meta: dict) -> None:
        self._add(f"{stem}.txt", caption.encode("utf-8"))
        self._add(f"{stem}.json", meta_to_json(meta))

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.stream.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        self.stream.write(data)
        self.stream.write(bytes(-len(data) % BLOCKSIZE))

    def close(self) -> None:
        # the end-of-archive marker, then zeros to a whole record, as tarfile ends an archive
        self.stream.write(bytes(2 * BLOCKSIZE))
        self.stream.write(bytes(-self.stream.tell() % tarfile.RECORDSIZE))
        self.stream.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        self.stream.close()
        self.tmp.unlink(missing_ok=True)


def member_stem(name: str) -> str:
    """A member's name without its extension, folders kept: the name webdataset groups a sample by."""
    base_start = name.rfind("/") + 1
    dot = name.find(".", base_start)
    return name if dot < 0 else name[:dot]


class FilesShardWriter:
    def __init__(self, root: Path, shard: str):
        self.final = root / shard
        self.tmp = temporary_name(self.final)
        self.tmp.mkdir()

    def write(self, key: str, image: bytes, image_ext: str, caption: str, meta: dict) -> None:
        (self.tmp / f"{key}.{image_ext}").write_bytes(image)
        (self.tmp / f"{key}.txt").write_bytes(caption.encode("utf-8"))
        (self.tmp / f"{key}.json").write_bytes(meta_to_json(meta))

    def write_sample(self, sample, caption: str, meta: dict, changed: bool) -> None:
        self.write(sample.key, sample.image, sample.image_ext, caption, meta)

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

    def write_sample(self, sample, caption: str, meta: dict, changed: bool) -> None:
        self.write(sample.key, sample.image, sample.image_ext, caption, meta)

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
