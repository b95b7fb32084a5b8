"""Where each sample of a webdataset tar starts and ends, found for a whole window of blocks at once.

`formats.tar_members` parses a tar block by block in Python, about a microsecond per entry: right for
reading samples, but it dominates a rewrite that only drops some samples and copies the rest. This index
reads the shard a window at a time and finds every header in it with numpy: a block is a header where
it carries the "ustar" magic and a valid checksum, and the headers must form an unbroken chain (each
header's size leads exactly to the next). Anything the chain cannot vouch for (a damaged or old-style
header, GNU long names, pax records that rename or resize a member, links, folders, member names with
folders, a sample with two members of one extension, a cut archive) raises `NotIndexable`, and the
caller reads that shard with the block-by-block parser, which handles (or reports) all of it.

Each sample is its run of consecutive members sharing a key (webdataset's rule, as `formats.split_name`),
with the pax entries in front of each member: [start, end) in the window covers all of it, so copying
that range copies the sample exactly as stored.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

BLOCK = 512
WINDOW = 16 << 20
USTAR = b"ustar"
REGULAR = (ord("0"), 0)
PAX = ord("x")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # the reader's order of preference
EXT_WIDTH = 5  # the longest extension looked for, plus one byte that must be the name's end
NAME_WIDTH = 100


class NotIndexable(Exception):
    """The shard needs the block-by-block parser (formats.tar_members); the message says why."""


@dataclass
class WindowSamples:
    """The complete samples of one window; offsets are into `data` (the window's bytes)."""

    data: memoryview  # of the memory-mapped shard
    offset: int  # where `data` starts in the shard file
    keys: list
    starts: np.ndarray  # first byte of each sample (its first pax entry or header)
    ends: np.ndarray  # one past its last data block
    image_size: np.ndarray  # size of the image member the reader would take; -1: none
    caption: np.ndarray  # (start, end) of the .txt member's data; start -1: no .txt
    meta: np.ndarray  # (start, end) of the .json member's data; start -1: no .json


def indexed_samples(path: Path, window: int = WINDOW) -> Iterator[WindowSamples]:
    """The shard's samples, window by window; raises NotIndexable (before or after yielding some).

    The shard is memory-mapped, not read: the index touches the page cache where it lies, and the
    writer copies ranges inside the kernel, so the bytes never pass through this process. Windows
    already done are dropped from the mapping, so resident memory stays near one window.
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        if size % BLOCK or not size:
            raise NotIndexable(f"{path.name}: its length is not a whole, non-zero number of tar blocks")
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    offset = 0
    while True:
        data = memoryview(mapped)[offset:offset + window]
        samples, consumed, finished = index_window(data)
        if consumed == 0 and not finished:
            if offset + len(data) >= size:
                raise NotIndexable(f"{path.name}: the archive ends inside a sample or without its end marker")
            window *= 2  # one sample larger than the window
            continue
        if len(samples.keys):
            samples.offset = offset
            yield samples
        if finished:
            return
        _drop_pages(mapped, offset + consumed)
        offset += consumed


def _drop_pages(mapped: mmap.mmap, end: int) -> None:
    """Unmap the pages wholly before `end` from this process (they stay in the page cache)."""
    whole_pages = end - end % mmap.PAGESIZE
    if whole_pages and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, 0, whole_pages)


def index_window(data: bytes) -> tuple:
    """(WindowSamples of the complete samples, bytes they take from the start, whether the archive's
    end-of-archive marker was reached). The window must start at a sample's first entry."""
    blocks = np.frombuffer(data, np.uint8).reshape(-1, BLOCK)
    headers = _header_positions(blocks)
    if not len(headers) or headers[0] != 0:
        if _is_end_marker(blocks, 0):
            return _no_samples(data), 0, True
        raise NotIndexable("a block that should hold a header does not")
    headers, sizes, fields, following = _header_chain(blocks, headers)
    kinds = fields[:, 156]
    complete = following <= len(blocks)
    finished = bool(complete[-1]) and _archive_ends_at(blocks, int(following[-1]))
    if not np.isin(kinds, REGULAR + (PAX,)).all():
        raise NotIndexable("it holds entries other than files and pax records (links, folders, long names)")
    _check_pax_records(blocks, headers, sizes, following, kinds)
    members = np.flatnonzero(kinds != PAX)
    member_complete = complete[members]
    if finished and (not len(members) or members[-1] != len(headers) - 1):
        raise NotIndexable("a pax record describes no member")
    if not len(members):  # the window holds only the pax entries of a member that starts after it
        return _no_samples(data), 0, False
    keys_bytes, extension_codes = _names(fields[members, :NAME_WIDTH], fields[members, 345])
    first_entry = np.concatenate(([0], members[:-1] + 1))
    new_sample = np.ones(len(members), bool)
    new_sample[1:] = keys_bytes[1:] != keys_bytes[:-1]
    sample_first = np.flatnonzero(new_sample)
    sample_last = np.append(sample_first[1:], len(members)) - 1
    # a sample is complete when its last member is and the next sample (or the archive's end) has begun
    usable = member_complete[sample_last] & ((sample_last < len(members) - 1) | finished)
    count = int(np.argmin(usable)) if not usable.all() else len(usable)
    sample_first, sample_last = sample_first[:count], sample_last[:count]
    used = int(sample_last[-1]) + 1 if count else 0  # members of the complete samples
    member_start = headers[first_entry] * BLOCK
    member_data = (headers[members[:used]] + 1) * BLOCK
    member_size = sizes[members[:used]]
    extension_codes = extension_codes[:used]
    samples = WindowSamples(
        data=data,
        offset=0,
        keys=[k.decode("utf-8", "surrogateescape") for k in keys_bytes[sample_first].tolist()],
        starts=member_start[sample_first],
        ends=following[members[sample_last]] * BLOCK if count else np.zeros(0, np.int64),
        image_size=_image_size(extension_codes, member_size, sample_first, count),
        caption=_member_span(extension_codes, "txt", member_data, member_size, sample_first, count),
        meta=_member_span(extension_codes, "json", member_data, member_size, sample_first, count),
    )
    consumed = int(samples.ends[-1]) if count else 0
    return samples, consumed, finished and count == len(usable)


def _header_chain(blocks: np.ndarray, candidates: np.ndarray) -> tuple:
    """The headers that follow one another from the window's first block (positions, sizes, header
    blocks, and the block after each entry), each with a plain octal size and a matching checksum."""
    headers = candidates
    fields = blocks[headers]
    # a block of image data can carry the magic by chance: read every candidate's size leniently, keep
    # the chain from the first header, and hold only the kept headers to the strict checks
    sizes, plain = _octal(fields[:, 124:136])
    following = headers + 1 + (np.maximum(sizes, 0) + BLOCK - 1) // BLOCK
    broken = np.flatnonzero(following[:-1] != headers[1:])
    last = len(headers) - 1 if not len(broken) else broken[0]
    if following[last] <= len(blocks) and len(broken):
        raise NotIndexable("the headers do not follow one another")  # a header-like block inside data, or damage
    headers, sizes, plain, fields, following = (a[:last + 1] for a in (headers, sizes, plain, fields, following))
    checksums, checksum_plain = _octal(fields[:, 148:156])
    if not (plain.all() and checksum_plain.all()):
        raise NotIndexable("a header's size or checksum is not plain octal (base-256, damaged)")
    if not np.array_equal(checksums, _checksums(fields)):
        raise NotIndexable("a header's checksum does not match")
    return headers, sizes, fields, following


def _header_positions(blocks: np.ndarray) -> np.ndarray:
    # one column first: the full five-byte comparison only for the few blocks whose byte 257 is "u"
    maybe = np.flatnonzero(blocks[:, 257] == USTAR[0])
    magic = blocks[maybe, 257:262]
    return maybe[(magic == np.frombuffer(USTAR, np.uint8)).all(axis=1)]


def _octal(fields: np.ndarray) -> tuple:
    """Octal numbers as tarfile and GNU tar write them (digits from the field's first byte, then NULs or
    spaces), and which rows are written so; other rows (base-256, leading spaces, empty) get -1."""
    digits = fields - np.uint8(ord("0"))  # wraps below "0", so one comparison finds the digits
    is_digit = digits < 8
    width = int(np.argmin(is_digit[0])) if not is_digit[0].all() else fields.shape[1]
    padding = fields[:, width:]
    if width and is_digit[:, :width].all() and ((padding == 0) | (padding == ord(" "))).all():
        # every row as wide as the first (writers pad to a fixed width): one exact float product
        powers = 8.0 ** np.arange(width - 1, -1, -1)
        return (digits[:, :width] @ powers).astype(np.int64), np.ones(len(fields), bool)
    return _octal_row_by_row(fields)


def _octal_row_by_row(fields: np.ndarray) -> tuple:
    digits = fields.astype(np.int64) - ord("0")
    is_digit = (digits >= 0) & (digits < 8)
    length = np.where(is_digit.all(axis=1), fields.shape[1], is_digit.argmin(axis=1))
    after = np.arange(fields.shape[1]) >= length[:, None]
    padding_ok = ((fields == 0) | (fields == ord(" ")) | ~after).all(axis=1)
    plain = (length > 0) & padding_ok
    value = np.zeros(len(fields), np.int64)
    for column in range(fields.shape[1]):
        inside = column < length
        value = np.where(inside, value * 8 + np.where(inside, digits[:, column], 0), value)
    return np.where(plain, value, -1), plain


def _checksums(fields: np.ndarray) -> np.ndarray:
    """Each header's byte sum with its checksum field counted as eight spaces (tarfile's unsigned sum;
    512 bytes sum to under 2^32)."""
    total = fields.sum(axis=1, dtype=np.uint32).astype(np.int64)
    return total - fields[:, 148:156].sum(axis=1, dtype=np.int64) + 8 * ord(" ")


def _is_end_marker(blocks: np.ndarray, position: int) -> bool:
    return position + 2 <= len(blocks) and not blocks[position:position + 2].any()


def _archive_ends_at(blocks: np.ndarray, position: int) -> bool:
    if position >= len(blocks):
        return False  # the window ends exactly after a member: the next window tells
    if _is_end_marker(blocks, position):
        return True
    if position + 1 == len(blocks) and not blocks[position].any():
        return False  # one zero block at the window's edge: the next window tells
    raise NotIndexable("no header and no end-of-archive marker after a member")


def _check_pax_records(blocks: np.ndarray, headers, sizes, following, kinds) -> None:
    """Pax records that give a member another path or size are the block-by-block parser's job."""
    pax = np.flatnonzero((kinds == PAX) & (following <= len(blocks)))  # a cut one is read in the next window
    if not len(pax):
        return
    if (following[pax] - headers[pax] == 2).all():  # the usual: each entry's records fit its one data block
        records = blocks[headers[pax] + 1, :int(sizes[pax].max())].tobytes()
    else:
        spans = zip((headers[pax] + 1).tolist(), following[pax].tolist())
        records = b"\n".join(blocks[start:end].tobytes() for start, end in spans)
    if b"path=" in records or b"size=" in records:  # may match across two entries: then only more care
        raise NotIndexable("a pax record renames or resizes a member")


def _names(name_fields: np.ndarray, prefix_start: np.ndarray) -> tuple:
    """Each member's key (bytes up to the first dot) as a numpy bytes array, and its extension's code
    (the index in EXTENSIONS, or -1 for another extension)."""
    used = np.flatnonzero(name_fields.any(axis=0))
    width = int(used[-1]) + 2 if len(used) else 1  # the names' bytes and at least one NUL column after
    names = name_fields[:, :min(width, NAME_WIDTH)]
    is_end = names == 0
    length = np.where(is_end.any(axis=1), is_end.argmax(axis=1), names.shape[1])
    within = np.arange(names.shape[1]) < length[:, None]
    if ((names == ord("/")) & within).any() or prefix_start.any():
        raise NotIndexable("member names with folders or a ustar name prefix")
    is_dot = (names == ord(".")) & within
    dot = np.where(is_dot.any(axis=1), is_dot.argmax(axis=1), length)
    keys = np.where(np.arange(names.shape[1]) < dot[:, None], names, 0).astype(np.uint8)
    keys = np.ascontiguousarray(keys).view(f"S{names.shape[1]}").ravel()
    padded = np.concatenate([names, np.zeros((len(names), EXT_WIDTH), np.uint8)], axis=1)
    columns = (dot + 1)[:, None] + np.arange(EXT_WIDTH)
    extension = padded[np.arange(len(names))[:, None], columns]
    extension = np.where(columns < length[:, None], extension, 0)
    extension = np.where((extension >= ord("A")) & (extension <= ord("Z")), extension + 32, extension)
    codes = np.full(len(names), -1)
    for code, name in enumerate(EXTENSIONS):
        pattern = np.frombuffer(name.encode().ljust(EXT_WIDTH, b"\0"), np.uint8)
        codes[(extension == pattern).all(axis=1) & (dot < length)] = code
    return keys, codes


EXTENSIONS = IMAGE_EXTENSIONS + ("txt", "json")


def _per_sample(present: np.ndarray, values: np.ndarray, sample_first: np.ndarray, count: int) -> np.ndarray:
    """Per sample, the value of its one member where `present` (or -1); two such members: NotIndexable."""
    if not count:
        return np.zeros(0, np.int64)
    how_many = np.add.reduceat(present.astype(np.int64), sample_first)
    if (how_many > 1).any():
        raise NotIndexable("a sample has two members with one extension")
    value = np.add.reduceat(np.where(present, values, 0), sample_first)
    return np.where(how_many == 1, value, -1)


def _image_size(codes, sizes, sample_first, count) -> np.ndarray:
    size = np.full(count, -1, np.int64)
    for code in reversed(range(len(IMAGE_EXTENSIONS))):  # the preferred extension last, so it wins
        this = _per_sample(codes == code, sizes, sample_first, count)
        size = np.where(this >= 0, this, size)
    return size


def _member_span(codes, extension: str, data_start, sizes, sample_first, count) -> np.ndarray:
    present = codes == EXTENSIONS.index(extension)
    start = _per_sample(present, data_start, sample_first, count)
    size = _per_sample(present, sizes, sample_first, count)
    return np.stack([start, np.where(start >= 0, start + size, -1)], axis=1)


def _no_samples(data: bytes) -> WindowSamples:
    empty = np.zeros(0, np.int64)
    return WindowSamples(data, 0, [], empty, empty, empty, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64))
