"""Write a filtered or caption-changed copy of an img2dataset folder, in the input's own format.

Image bytes are copied unchanged; keys and metadata columns are kept; each shard's NNNNN.parquet and
NNNNN_stats.json are rewritten to describe what the shard now holds; `manifest.parquet` gets one row
per input key. The copy is built under a temporary folder name and renamed into place at the end.

Example (a two-sample webdataset written by hand, then filtered):
    >>> import tempfile
    >>> from pathlib import Path
    >>> from dataio.formats import TarShardWriter
    >>> from dataio.manifest import read_manifest
    >>> from dataio.reader import open_dataset
    >>> source = Path(tempfile.mkdtemp()) / "data"; source.mkdir()
    >>> shard = TarShardWriter(source, "00000")
    >>> for key, caption in (("000000000", "a red square"), ("000000001", "IMG_0042")):
    ...     shard.write(key, b"not decoded here", "jpg", caption, {"key": key})
    >>> shard.close()
    >>> decide = lambda s: Remove("one-word caption") if len(s.caption.split()) < 2 else Keep()
    >>> result = write_dataset(open_dataset(source), source.with_name("clean"), decide, progress=False,
    ...                        verify_images=False)
    >>> result.counts
    {'kept': 1, 'changed': 0, 'removed': 1, 'unreadable': 0}
    >>> read_manifest(result.path)[["key", "action", "reason"]].values.tolist()
    [['000000000', 'kept', ''], ['000000001', 'removed', 'one-word caption']]
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from dataio import manifest as manifest_io
from dataio.atomic import atomic_write, temporary_name, write_json
from dataio.errors import UsageError
from dataio.formats import (
    FilesShardWriter,
    ParquetShardWriter,
    TarShardWriter,
    table_from_rows,
)
from dataio.reader import (
    CAPTION_NOT_UTF8,
    EMPTY_IMAGE,
    NO_CAPTION,
    NO_IMAGE,
    Dataset,
    Sample,
    Unreadable,
    duplicate_key,
    listed_but_missing,
    parse_meta,
    success_row_of_key,
    unreadable_json,
    without_duplicates,
)
from dataio.tar_index import NotIndexable, indexed_samples


@dataclass(frozen=True)
class Keep:
    """Keep the sample; optionally with a new primary caption, a caption list, or extra metadata."""

    caption: Optional[str] = None
    captions: Optional[list] = None
    meta_update: Optional[dict] = None
    reason: str = ""


@dataclass(frozen=True)
class Remove:
    reason: str


Decision = Union[Keep, Remove]


@dataclass(frozen=True)
class ByKey:
    """A decision that needs only each sample's key, so the writer may copy samples without reading them.

    With a webdataset and `verify_images=False`, `write_dataset` then copies every kept sample as the byte
    range it takes in the shard (dataio.tar_index finds the ranges), at about disk speed: the tar
    structure is checked and a sample without an image, with an empty image, without a caption or with a
    caption that is not UTF-8 is unreadable, as always, but its json is not parsed (unless the shard's
    metadata table lacks the key and its row must come from the json). `on_key` decides those samples;
    samples the writer reads in full go to `on_sample` (default: `on_key` of their key). Decisions may
    only keep (with a reason) or remove.
    """

    on_key: Callable[[str], Decision]
    on_sample: Optional[Callable[[Sample], Decision]] = None

    def __call__(self, sample: Sample) -> Decision:
        return self.on_sample(sample) if self.on_sample is not None else self.on_key(sample.key)


@dataclass
class WriteResult:
    path: Path
    counts: dict
    manifest_path: Path
    seconds: float
    shard_counts: dict = field(default_factory=dict)


def write_dataset(
    dataset: Dataset,
    out: Union[str, Path],
    decide: Callable[[Sample], Decision],
    overwrite: bool = False,
    progress: bool = True,
    extra_files: Optional[dict] = None,
    verify_images: bool = True,
    threads: Optional[int] = None,
) -> WriteResult:
    """Copy `dataset` to `out` in the same format, applying `decide` to every readable sample.

    `extra_files` maps file names to bytes written beside the shards (a recipe, a README).
    `verify_images=False` skips decoding each image: faster, but a corrupt image is copied as it is.
    `threads`: for a key-only decision (ByKey), how many shards are indexed and copied at once.
    Several processes can share the work: `start_output`, `write_shards` (each its own shards) and
    `finish_output` are the three parts of this function (mitigation.parallel runs them under torchrun).
    """
    started = time.time()
    staging = start_output(dataset, out, overwrite)
    try:
        written = write_shards(dataset, dataset.shards, staging, decide, verify_images, progress,
                               out_name=Path(out).name, threads=threads)
        return finish_output(staging, out, written, extra_files, started)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass
class ShardsWritten:
    """What `write_shards` wrote: manifest rows per shard, in the order the shards were given."""

    rows_by_shard: dict = field(default_factory=dict)

    def rows(self) -> list:
        return [row for rows in self.rows_by_shard.values() for row in rows]


def check_output(dataset: Dataset, out: Union[str, Path], overwrite: bool) -> Path:
    out = Path(out)
    if out.resolve() == dataset.path.resolve():
        raise UsageError(f"{out}: the output folder must differ from the input folder")
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: already exists; remove it or pass --overwrite")
    return out


def start_output(dataset: Dataset, out: Union[str, Path], overwrite: bool = False,
                 staging: Optional[Path] = None) -> Path:
    """An empty staging folder beside `out` (a hidden temporary name unless given), after checking `out`."""
    out = check_output(dataset, out, overwrite)
    staging = Path(staging) if staging is not None else temporary_name(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def write_shards(dataset: Dataset, shards: list, staging: Path, decide, verify_images: bool = True,
                 progress: bool = True, out_name: str = "", threads: Optional[int] = None) -> ShardsWritten:
    """Write `shards` (a subset of the dataset's, or all) into `staging`. A key seen in an earlier shard
    of this call is a duplicate: unreadable, not written again.

    A key-only decision on a webdataset without `verify_images` (see ByKey) indexes and copies shards on
    `threads` threads (default: this process's share of the cores, at most MAX_THREADS); decisions and
    duplicates are still settled one shard after another, in order, so the output is the same.
    """
    bar = tqdm(total=len(shards), desc=f"writing {out_name or staging.name}", unit="shard", disable=not progress)
    with bar:
        if dataset.format == "webdataset" and not verify_images and isinstance(decide, ByKey):
            return _copy_shards_by_key(dataset, shards, staging, decide, threads or default_threads(), bar)
        seen_keys: dict = {}
        written = ShardsWritten()
        for shard in shards:
            written.rows_by_shard[shard] = _write_shard(dataset, shard, staging, decide, verify_images, seen_keys)
            bar.update()
        return written


# the threads mostly wait on the disk and on the one thread that decides; more than 4 were never measured
MAX_THREADS = 4


def default_threads() -> int:
    """This process's share of its cores (torchrun's ranks on one node share them), 1 to MAX_THREADS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_THREADS, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


def finish_output(staging: Path, out: Union[str, Path], written: ShardsWritten, extra_files: Optional[dict],
                  started: float) -> WriteResult:
    """The manifest and extra files into `staging`, then `staging` renamed over `out`; `started`: when the
    write began (time.time()), for WriteResult.seconds."""
    out = Path(out)
    rows = written.rows()
    manifest_path = manifest_io.write_manifest(rows, staging)
    for name, data in (extra_files or {}).items():
        (staging / name).write_bytes(data)
    _replace_folder(staging, out)
    return WriteResult(
        path=out,
        counts=manifest_io.count_actions(rows),
        manifest_path=out / manifest_path.name,
        seconds=time.time() - started,
        shard_counts={shard: manifest_io.count_actions(r) for shard, r in written.rows_by_shard.items()},
    )


def _replace_folder(staging: Path, out: Path) -> None:
    if out.exists():
        old = temporary_name(out).with_name(temporary_name(out).name + "-old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def _write_shard(dataset: Dataset, shard: str, staging: Path, decide, verify_images: bool, seen_keys: dict) -> list:
    started = time.time()
    metadata = dataset.metadata(shard)
    schema = metadata.schema if metadata is not None else None
    writer = _shard_writer(dataset.format, staging, shard, schema)
    kept = KeptMetadata(metadata)
    manifest_rows = []
    try:
        records = dataset.shard_records(shard, verify_images=verify_images, metadata=metadata, keep_stored=True)
        for record in without_duplicates(records, seen_keys):
            if isinstance(record, Unreadable):
                manifest_rows.append(manifest_io.row(record.key, shard, "unreadable", record.reason))
                continue
            decision = decide(record)
            if isinstance(decision, Remove):
                manifest_rows.append(manifest_io.row(record.key, shard, "removed", decision.reason))
                continue
            caption, meta, changed = apply_keep(record, decision)
            writer.write_sample(record, caption, meta, changed)
            kept.add(record.key, meta, changed)
            action = "changed" if changed else "kept"
            manifest_rows.append(manifest_io.row(record.key, shard, action, decision.reason))
    except BaseException:
        writer.abort()
        raise
    _finish_shard(writer, kept, metadata, staging, shard, started)
    return manifest_rows


def _copy_shards_by_key(dataset: Dataset, shards: list, staging: Path, decide: ByKey, threads: int,
                        bar) -> ShardsWritten:
    """write_shards for a key-only decision, as a pipeline: shards are indexed (`_index_shard`) and copied
    (`_copy_ranges`) on the pool, up to `threads` ahead, while this thread decides them in shard order. A
    shard the index cannot vouch for is written by `_write_shard`, here, in its turn."""
    seen_keys: dict = {}
    written = ShardsWritten()
    pending = iter(shards)
    indexing: deque = deque()
    copying: deque = deque()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="range-copy")

    def index_ahead() -> None:
        while len(indexing) < threads:
            shard = next(pending, None)
            if shard is None:
                return
            indexing.append((shard, pool.submit(_index_shard, dataset, shard)))

    try:
        index_ahead()
        while indexing:
            shard, future = indexing.popleft()
            try:
                index = future.result()
            except NotIndexable:
                index = None  # what the index cannot vouch for, the block-by-block reader reads (or reports)
            index_ahead()
            if index is None:
                written.rows_by_shard[shard] = _write_shard(dataset, shard, staging, decide, False, seen_keys)
                bar.update()
                continue
            ranges, rows = _decide_by_key(index, decide.on_key, seen_keys)
            written.rows_by_shard[shard] = rows
            copying.append(pool.submit(_copy_ranges, index, ranges, staging))
            while copying and (copying[0].done() or len(copying) > threads):
                copying.popleft().result()  # raises a copy's error here, in order
                bar.update()
        while copying:
            copying.popleft().result()
            bar.update()
    finally:
        # on an error, what has not started is dropped and what has is awaited, so the caller can remove
        # the staging folder with nothing still writing into it
        pool.shutdown(wait=True, cancel_futures=True)
    return written


@dataclass
class ShardIndex:
    """A webdataset shard as a key-only rewrite needs it: each sample's key, byte range and, where the
    reader would call it unreadable, why; found without reading its image or (mostly) its json."""

    shard: str
    path: Path
    kept: "KeptMetadata"  # the shard's metadata table; empty of kept rows until `_decide_by_key` adds them
    keys: list
    starts: list  # where each sample begins in the shard file
    ends: list
    problems: list  # "" where the sample is readable
    metas: dict  # sample position -> its parsed json, where the metadata table lacks its key
    started: float


def _index_shard(dataset: Dataset, shard: str) -> ShardIndex:
    """Raises NotIndexable where the block-by-block reader must read the shard; touches no shared state."""
    started = time.time()
    path = dataset.path / f"{shard}.tar"
    metadata = dataset.metadata(shard)
    kept = KeptMetadata(metadata)
    keys, starts, ends, problems, metas = [], [], [], [], {}
    for window in indexed_samples(path):
        window_problems = _structural_problems(window)
        for index, key in enumerate(window.keys):
            if not window_problems[index] and key not in kept.row_of_key:  # its row must come from its json
                metas[len(keys) + index], window_problems[index] = _parse_sample_json(window, index)
        keys += window.keys
        starts += (window.starts + window.offset).tolist()
        ends += (window.ends + window.offset).tolist()
        problems += window_problems
    return ShardIndex(shard, path, kept, keys, starts, ends, problems, metas, started)


def _decide_by_key(index: ShardIndex, decide_key, seen_keys: dict) -> tuple:
    """(byte ranges to copy, manifest rows) of an indexed shard, its kept samples added to `index.kept`;
    keys it keeps or removes are added to `seen_keys`, so a later copy of one is a duplicate."""
    shard, kept, rows, ranges = index.shard, index.kept, [], []
    for position, key in enumerate(index.keys):
        problem = index.problems[position]
        if not problem and key in seen_keys:
            problem = duplicate_key(seen_keys[key])
        if problem:
            rows.append(manifest_io.row(key, shard, "unreadable", problem))
            continue
        seen_keys[key] = shard
        decision = _key_only(decide_key(key), key)
        if isinstance(decision, Remove):
            rows.append(manifest_io.row(key, shard, "removed", decision.reason))
            continue
        start, end = index.starts[position], index.ends[position]
        if ranges and ranges[-1][1] == start:  # consecutive kept samples are one copy
            ranges[-1][1] = end
        else:
            ranges.append([start, end])
        kept.add(key, index.metas.get(position), False)
        rows.append(manifest_io.row(key, shard, "kept", decision.reason))
    missing = listed_but_missing(set(kept.row_of_key), set(index.keys), shard)
    rows += [manifest_io.row(m.key, shard, "unreadable", m.reason) for m in missing]
    return ranges, rows


def _copy_ranges(index: ShardIndex, ranges: list, staging: Path) -> None:
    writer = TarShardWriter(staging, index.shard)
    try:
        with open(index.path, "rb") as source:
            for start, end in ranges:
                writer.copy_range(source, start, end - start)
    except BaseException:
        writer.abort()
        raise
    _finish_shard(writer, index.kept, index.kept.metadata, staging, index.shard, index.started)


def _structural_problems(window) -> list:
    """Per sample of an indexed window, why the reader would call it unreadable ("" if it would not), found
    without parsing its json or decoding its image; the checks in `reader._to_record`'s order."""
    image_size, caption_start = window.image_size, window.caption[:, 0]
    problems = [""] * len(window.keys)
    for reason, broken in ((NO_IMAGE, image_size < 0), (EMPTY_IMAGE, image_size == 0),
                           (NO_CAPTION, (image_size > 0) & (caption_start < 0))):
        for index in np.flatnonzero(broken).tolist():
            problems[index] = reason
    try:
        _caption_bytes(window).decode("utf-8")
    except UnicodeDecodeError:  # a multi-byte character may also straddle two captions: check each
        for index, (start, end) in enumerate(window.caption.tolist()):
            if not problems[index] and not _is_utf8(bytes(window.data[start:end])):
                problems[index] = CAPTION_NOT_UTF8
    return problems


def _caption_bytes(window) -> bytes:
    """Every caption of the window, one after another, gathered with one numpy index."""
    spans = window.caption[window.caption[:, 0] >= 0]
    lengths = spans[:, 1] - spans[:, 0]
    first_of_each = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum())) + np.repeat(spans[:, 0] - first_of_each, lengths)
    return np.frombuffer(window.data, np.uint8)[positions].tobytes()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _parse_sample_json(window, index: int) -> tuple:
    start, end = window.meta[index].tolist()
    try:
        return parse_meta(bytes(window.data[start:end]) if start >= 0 else None), ""
    except ValueError as error:
        return None, unreadable_json(error)


def _key_only(decision: Decision, key: str) -> Decision:
    if isinstance(decision, Keep) and (decision.caption is not None or decision.captions is not None
                                       or decision.meta_update):
        raise ValueError(f"a ByKey decision changed sample {key}; it may only keep or remove")
    return decision


def _finish_shard(writer, kept: "KeptMetadata", metadata, staging: Path, shard: str, started: float) -> None:
    """The shard's metadata table and stats beside it, then the shard renamed into place."""
    failed_rows = _failed_download_rows(metadata)
    if isinstance(writer, ParquetShardWriter):
        writer.add_rows(failed_rows)
    else:
        table = kept.table()
        atomic_write(staging / f"{shard}.parquet", lambda tmp: pq.write_table(table, tmp))
    writer.close()
    _write_stats(staging, shard, kept.count, failed_rows, started)


class KeptMetadata:
    """The rows of a shard's new NNNNN.parquet, gathered sample by sample as the shard is written.

    Unchanged samples and failed downloads keep the input table's own rows (taken with pyarrow, no
    per-row Python); changed samples, and samples the input table does not list, get rows built from
    their json. Rows stay in the input table's order; unlisted ones follow in shard order.
    """

    def __init__(self, metadata: Optional[pa.Table]):
        self.metadata = metadata
        self.row_of_key = success_row_of_key(metadata)
        self.input_rows: list = []  # indices into `metadata`
        self.json_rows: list = []
        self.json_positions: list = []
        self.count = 0

    def add(self, key: str, meta: dict, changed: bool) -> None:
        self.count += 1
        row = self.row_of_key.get(key)
        if row is not None and not changed:
            self.input_rows.append(row)
            return
        self.json_rows.append(meta)
        self.json_positions.append(row if row is not None else self._unlisted_position())

    def _unlisted_position(self) -> int:
        return (self.metadata.num_rows if self.metadata is not None else 0) + len(self.json_rows)

    def table(self) -> pa.Table:
        if self.metadata is None:
            return table_from_rows(self.json_rows, None)
        rows = self.input_rows + _failed_row_indices(self.metadata)
        from_input = self.metadata.take(pa.array(rows, pa.int64()))
        if not self.json_rows:
            return from_input.take(pc.sort_indices(pa.array(rows, pa.int64())))
        from_json = table_from_rows(self.json_rows, self.metadata.schema)
        combined = pa.concat_tables([_conform(from_input, from_json.schema), from_json])
        return combined.take(pc.sort_indices(pa.array(rows + self.json_positions, pa.int64())))


def _failed_row_indices(metadata: pa.Table) -> list:
    if "status" not in metadata.column_names:
        return []
    downloaded = pc.fill_null(pc.equal(metadata.column("status"), "success"), False)
    return pc.indices_nonzero(pc.invert(downloaded)).to_pylist()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order; columns it lacks (those the json rows add) are null."""
    columns = [
        table.column(field.name).cast(field.type) if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _shard_writer(fmt: str, root: Path, shard: str, schema):
    if fmt == "webdataset":
        return TarShardWriter(root, shard)
    if fmt == "files":
        return FilesShardWriter(root, shard)
    return ParquetShardWriter(root, shard, schema)


def apply_keep(sample: Sample, decision: Keep) -> tuple:
    """The caption and metadata to write, and whether they differ from the input's."""
    if decision.caption is None and decision.captions is None and not decision.meta_update:
        return sample.caption, sample.meta, False
    meta = dict(sample.meta)
    caption = sample.caption if decision.caption is None else decision.caption
    if caption != sample.caption and "caption" in meta:
        meta["caption"] = caption
    if decision.captions is not None:
        meta["captions"] = list(dict.fromkeys([caption] + list(decision.captions)))
    if decision.meta_update:
        meta.update(decision.meta_update)
    return caption, meta, caption != sample.caption or meta != sample.meta


def _failed_download_rows(metadata) -> list:
    """Rows of urls img2dataset failed to fetch: kept so the output's metadata tells the whole story."""
    if metadata is None:
        return []
    return metadata.take(pa.array(_failed_row_indices(metadata), pa.int64())).to_pylist()


def _write_stats(root: Path, shard: str, successes: int, failed_rows: list, started: float) -> None:
    failed_download = sum(1 for r in failed_rows if r.get("status") == "failed_to_download")
    failed_resize = sum(1 for r in failed_rows if r.get("status") == "failed_to_resize")
    status_dict = {"success": successes} if successes else {}
    for r in failed_rows:
        reason = r.get("error_message") or r.get("status")
        status_dict[reason] = status_dict.get(reason, 0) + 1
    ended = time.time()
    stats = {
        "count": successes + len(failed_rows),
        "successes": successes,
        "failed_to_download": failed_download,
        "failed_to_resize": failed_resize,
        "duration": ended - started,
        "start_time": started,
        "end_time": ended,
        "status_dict": status_dict,
    }
    write_json(root / f"{shard}_stats.json", stats, indent=4)
