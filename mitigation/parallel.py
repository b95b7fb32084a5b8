"""Rewriting a dataset on several processes: under torchrun each rank writes every world_size-th shard.

    torchrun --nproc_per_node 8 cli.py mitigate --data pool --strategy remove --count 100000

The result is the one a single process writes: the same shard files byte for byte, one manifest in shard
order, the strategies' counters summed over the ranks. Rank 0 makes the staging folder, merges the ranks'
manifest parts, writes the extra files and renames the folder into place; the others only write shards.
Ranks talk through torch.distributed (gloo: rewriting needs no GPU) and the shared output folder, so on
several nodes the output must be on a file system every node sees.

A key found in two shards that different ranks wrote cannot be resolved the way one process does (it
keeps the first, counts the second unreadable): that run stops with an error naming both shards.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataio import manifest as manifest_io
from dataio.errors import DataError, UsageError
from dataio.reader import Dataset
from dataio.writer import ShardsWritten, WriteResult, finish_output, start_output, write_dataset, write_shards
from train.distributed import World, barrier, broadcast_object, gather_objects

PART_PREFIX = ".manifest-part-"


def write_on_ranks(dataset: Dataset, out, decide, world: World, steps: list = (), *, overwrite: bool = False,
                   progress: bool = True, extra_files: dict | None = None, verify_images: bool = True) -> WriteResult:
    """dataio.writer.write_dataset, its shards split over the torchrun ranks; `steps`' stats are summed over
    the ranks. Every rank returns the same WriteResult."""
    if not world.distributed:
        return write_dataset(dataset, out, decide, overwrite=overwrite, progress=progress, extra_files=extra_files,
                             verify_images=verify_images)
    started = time.time()
    staging = Path(_on_main_or_raise(world, lambda: str(start_output(dataset, out, overwrite))))
    mine = [shard for i, shard in enumerate(dataset.shards) if i % world.world_size == world.rank]
    written = write_shards(dataset, mine, staging, decide, verify_images, progress and world.is_main,
                           out_name=Path(out).name)
    _write_part(staging / f"{PART_PREFIX}{world.rank:05d}.parquet", written)
    _sum_stats_over_ranks(steps, world)
    barrier(world)

    def merge_and_finish():
        try:
            merged = merge_parts(staging, dataset.shards)
            return finish_output(staging, out, merged, extra_files, started)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    return _on_main_or_raise(world, merge_and_finish)


def _on_main_or_raise(world: World, work):
    """work() on rank 0, its result on every rank; an expected error there is raised on every rank."""
    outcome = None
    if world.is_main:
        try:
            outcome = ("ok", work())
        except (UsageError, DataError) as error:
            outcome = (type(error).__name__, str(error))
    kind, value = broadcast_object(outcome, world)
    if kind == "ok":
        return value
    raise (UsageError if kind == "UsageError" else DataError)(value)


def _write_part(path: Path, written: ShardsWritten) -> None:
    pq.write_table(pa.Table.from_pylist(written.rows(), schema=manifest_io.SCHEMA), path)


def merge_parts(staging: Path, shard_order: list) -> ShardsWritten:
    """The ranks' manifest parts as one, shards in `shard_order`; the part files are removed."""
    parts = sorted(staging.glob(f"{PART_PREFIX}*.parquet"))
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    for part in parts:
        part.unlink()
    _refuse_duplicates_across_ranks(frame)
    position = {shard: i for i, shard in enumerate(shard_order)}
    frame = frame.assign(_order=frame["shard"].map(position)).sort_values("_order", kind="stable")
    by_shard = {shard_order[int(order)]: group.drop(columns="_order").to_dict("records")
                for order, group in frame.groupby("_order", sort=True)}
    return ShardsWritten({shard: by_shard.get(shard, []) for shard in shard_order})


def _refuse_duplicates_across_ranks(frame: pd.DataFrame) -> None:
    # within one rank a duplicate is already an unreadable row; a key read as a sample twice crossed ranks
    read = frame[frame["action"] != "unreadable"]
    twice = read[read["key"].duplicated(keep=False)]
    if len(twice):
        key = twice["key"].iloc[0]
        shards = sorted(twice.loc[twice["key"] == key, "shard"])
        raise DataError(f"key {key} is in shards {' and '.join(shards)}, written by different processes; rewrite "
                        "with one process, which keeps the first and counts the other unreadable")


def _sum_stats_over_ranks(steps, world: World) -> None:
    every_rank = gather_objects([dict(step.stats) for step in steps], world)
    for index, step in enumerate(steps):
        total: dict = {}
        for rank_stats in every_rank:
            for name, value in rank_stats[index].items():
                total[name] = total.get(name, 0) + value
        step.stats.clear()
        step.stats.update(total)
