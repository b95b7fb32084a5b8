"""The steps of a demo build before and after img2dataset: choose, stage, list, serve, check.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> items, _ = candidates("synthetic", n=3, seed=0, image_size=64)
    >>> staged, left_out = stage(items, 3, Path(tempfile.mkdtemp()), processes=1, progress=False)
    >>> len(staged), left_out
    (3, {})
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dataio.errors import DataError
from demo import openclipart, synthetic
from demo.local_server import no_proxy_for_localhost, serve_folder
from demo.source import SourceItem, stage_image

DEFAULT_SYNTHETIC_N = 1000
SYNTHETIC_MIN_RENDER = 128
# Below this many images, starting worker processes costs more than it saves.
MIN_ITEMS_FOR_PROCESSES = 200
BASE_COLUMNS = {
    "url_path": pa.string(), "caption": pa.string(), "captions": pa.list_(pa.string()), "category": pa.string(),
    "injected": pa.bool_(), "noise": pa.string(), "original_caption": pa.string(), "swapped_from": pa.string(),
    "source_id": pa.string(),
}


def candidates(source: str, n: Optional[int], seed: int, image_size: int, cache_dir=None,
               progress: bool = True) -> tuple:
    """(items in build order, counts about the source); more items than `n` when some may be left out."""
    if source == "synthetic":
        size = max(SYNTHETIC_MIN_RENDER, image_size)
        return list(synthetic.generate(n or DEFAULT_SYNTHETIC_N, seed=seed, size=size)), {}
    root = openclipart.ensure_openclipart(Path(cache_dir) if cache_dir else None)
    result = openclipart.scan(root, progress=progress)
    if not result.items:
        raise DataError(f"{root}: no drawings found (png/ and svg/ trees are empty or unreadable)")
    items = list(result.items)
    # Shuffled so that every shard holds a mix of categories, not one folder each.
    random.Random(f"openclipart:{seed}").shuffle(items)
    return items, result.counts


def stage(items: list, wanted: int, web_dir: Path, processes: int, progress: bool = True,
          image_size: int = 64) -> tuple:
    """Write images to `web_dir` in order until `wanted` are staged; return (staged items, left-out counts).

    Served images are at most max(256, 2 * image_size) pixels on a side, so that img2dataset still
    downscales to `image_size` while staging stays quick.

    Items that cannot be staged (blank, too large, unreadable) are counted by reason and replaced by the
    next candidates, so the build still reaches `wanted` samples when the source has enough.
    """
    staged, left_out = [], Counter()
    position = 0
    use_processes = processes > 1 and wanted >= MIN_ITEMS_FOR_PROCESSES
    max_side = max(256, 2 * image_size)
    with _mapper(processes if use_processes else 1) as map_in_order, \
            tqdm(total=wanted, desc="preparing images", unit="image", disable=not progress) as bar:
        while len(staged) < wanted and position < len(items):
            batch = items[position: position + wanted - len(staged)]
            position += len(batch)
            jobs = [(item, web_dir / item.url_path, max_side) for item in batch]
            for item, reason in zip(batch, map_in_order(_stage_job, jobs)):
                if reason is None:
                    staged.append(item)
                    bar.update(1)
                else:
                    left_out[reason.split(" (")[0]] += 1
        bar.total = len(staged)  # the source ran out before `wanted`: end the bar at what was staged
        bar.refresh()
    return staged, dict(left_out)


def _stage_job(job: tuple) -> Optional[str]:
    item, destination, max_side = job
    return stage_image(item, destination, max_side)


@contextlib.contextmanager
def _mapper(processes: int) -> Iterator:
    if processes <= 1:
        yield map
        return
    # spawn, not fork: the caller may hold threads (pytest, tqdm) that a forked child would inherit locked.
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"))
    try:
        yield lambda function, jobs: pool.map(function, jobs, chunksize=16)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def row_for(item: SourceItem) -> dict:
    """The url-list row of a staged item; `url_path` becomes `url` once the server's address is known."""
    row = {
        "url_path": item.url_path, "caption": item.caption, "captions": list(item.captions),
        "category": item.category, "injected": False, "noise": None, "original_caption": None,
        "swapped_from": None, "source_id": item.source_id,
    }
    row.update(item.extra)
    return row


def write_url_list(rows: list, path: Path) -> Path:
    """The url+caption parquet img2dataset reads, with explicit column types (no all-null columns)."""
    fields = [pa.field("url", pa.string())]
    for name in rows[0]:
        if name == "url":
            continue
        # A boilerplate swap sets a row's other caption fields to None: the type comes from a row that has one.
        value = next((row[name] for row in rows if row.get(name) is not None), None)
        if name in BASE_COLUMNS:
            kind = BASE_COLUMNS[name]
        elif isinstance(value, list):
            kind = pa.list_(pa.string())
        elif isinstance(value, bool):
            kind = pa.bool_()
        else:
            kind = pa.string()
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@contextlib.contextmanager
def serving(web_dir: Path, log_path: Path) -> Iterator[str]:
    """Serve `web_dir` on 127.0.0.1 with proxies bypassed for it; yield the base url."""
    with serve_folder(web_dir, log_path) as base_url, no_proxy_for_localhost():
        yield base_url


def check_download(folder: Path, expected: int) -> dict:
    """Totals from img2dataset's NNNNN_stats.json files; DataError when nothing arrived or captions broke.

    Every sample's json must carry `captions` as a list: img2dataset copies list columns through its
    arrow shards into json lists; this makes sure that still holds for the installed version.
    """
    totals = Counter()
    stats_files = sorted(folder.glob("*_stats.json"))
    for stats_file in stats_files:
        stats = json.loads(stats_file.read_text())
        for name in ("count", "successes", "failed_to_download", "failed_to_resize"):
            totals[name] += int(stats.get(name, 0))
    if totals["count"] != expected:
        raise DataError(f"{folder}: img2dataset handled {totals['count']} of {expected} urls; see its output above")
    if totals["successes"] == 0:
        raise DataError(f"{folder}: img2dataset downloaded no image from the local server; see its output above")
    from dataio.reader import open_dataset

    dataset = open_dataset(folder)
    samples = 0
    for sample in dataset.samples(verify_images=False):
        if not isinstance(sample.meta.get("captions"), list):
            raise DataError(f"{folder}: sample {sample.key} has no `captions` list in its json")
        samples += 1
    if samples != totals["successes"]:
        raise DataError(f"{folder}: {samples} readable samples but img2dataset reports {totals['successes']}")
    return {"samples": samples, "shards": len(dataset.shards), **totals}
