"""One record per caption: a webdataset for trainers that read only the .txt (open_clip's trainer).

Each caption of a sample's `captions` list becomes its own record, keyed KEY_c0, KEY_c1, ... (c0 is
the primary caption), with the image bytes unchanged and the json's `source_key` / `caption_index`
saying where it came from. An epoch over the expanded set then shows every caption once, instead of
one sampled caption per image. The output is always webdataset (NNNNN.tar, NNNNN.parquet,
NNNNN_stats.json, plus open_clip's sizes.json), whatever the input format, and carries the input's
mitigation.json with `caption_sampling` off: each record already has a single caption.

Example:
    >>> from mitigation.expand import expand_captions
    >>> result = expand_captions("laion_subset.text-aug", "laion_subset.text-aug.expanded")   # doctest: +SKIP
    >>> result.records, result.samples                                                       # doctest: +SKIP
    (35000, 7000)
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dataio.atomic import temporary_name, write_json
from dataio.errors import UsageError
from dataio.formats import TarShardWriter, write_parquet_atomic
from dataio.reader import Unreadable, open_dataset
from dataio.recipe import read_recipe, write_recipe

EXPANDED_SUFFIX = ".expanded"


@dataclass
class ExpandResult:
    path: Path
    samples: int
    records: int
    skipped: list
    shards: list

    def train_data(self) -> str:
        """The --train-data brace pattern open_clip's trainer takes for this folder."""
        first, last = self.shards[0], self.shards[-1]
        return str(self.path / (f"{first}.tar" if first == last else f"{{{first}..{last}}}.tar"))


def expanded_records(sample) -> list:
    """(key, caption, meta) per caption of the sample, primary first."""
    records = []
    for index, caption in enumerate(sample.captions):
        meta = {k: v for k, v in sample.meta.items() if k != "captions"}
        key = f"{sample.key}_c{index}"
        meta.update(key=key, source_key=sample.key, caption_index=index)
        if "caption" in meta:
            meta["caption"] = caption
        records.append((key, caption, meta))
    return records


def expand_captions(data_dir, out, overwrite: bool = False, progress: bool = True) -> ExpandResult:
    """Write `out` as a webdataset with one record per caption of each sample of `data_dir`."""
    dataset = open_dataset(data_dir)
    out = Path(out)
    if out.resolve() == dataset.path.resolve():
        raise UsageError(f"{out}: the expanded folder must differ from the input folder")
    if out.exists() and not overwrite:
        raise UsageError(f"{out}: already exists; remove it or pass --overwrite")
    staging = temporary_name(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    samples, sizes, skipped = 0, {}, []
    try:
        for shard in tqdm(dataset.shards, desc=f"expanding into {out.name}", unit="shard", disable=not progress):
            started, writer, rows = time.time(), TarShardWriter(staging, shard), []
            for record in dataset.shard_records(shard, verify_images=False):
                if isinstance(record, Unreadable):
                    skipped.append((record.key, record.reason))
                    continue
                samples += 1
                for key, caption, meta in expanded_records(record):
                    writer.write(key, record.image, record.image_ext, caption, meta)
                    rows.append({**meta, "status": meta.get("status", "success")})
            writer.close()
            metadata = dataset.metadata(shard)
            write_parquet_atomic(rows, metadata.schema if metadata is not None else None, staging / f"{shard}.parquet")
            write_json(staging / f"{shard}_stats.json", _stats(len(rows), started), indent=4)
            sizes[f"{shard}.tar"] = len(rows)
        write_json(staging / "sizes.json", sizes, indent=4)
        recipe = read_recipe(dataset.path)
        if recipe:
            recipe["training"] = {**recipe.get("training", {}), "caption_sampling": False}
            recipe["expanded_from"] = str(dataset.path.resolve())
            write_recipe(staging, recipe)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExpandResult(out, samples, sum(sizes.values()), skipped, list(dataset.shards))


def _stats(records: int, started: float) -> dict:
    ended = time.time()
    return {"count": records, "successes": records, "failed_to_download": 0, "failed_to_resize": 0,
            "duration": ended - started, "start_time": started, "end_time": ended,
            "status_dict": {"success": records} if records else {}}
