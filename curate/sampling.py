"""Sample, then infer: score a pool far larger than the reference models train on.

The kfold reference models train on a sample of N pairs, which get every score as usual. Every other pair
of the pool is held out by ALL K models, so their mean alignment is a clean held-out score; with the
neighbour score in each model's space, caption frequency over the whole pool and caption lint, these
inference-only features feed a small predictor fitted on the sample, which maps them to the sample's full
ranking (distillation: the sample's ranking also rests on csl, which only training can give).

The pool is scored shard by shard (one input shard in memory at a time), each shard's scores written to
OUT/scores_by_shard/NNNNN.parquet as it finishes: a run started again redoes only the shards without a file.
Under torchrun each process takes every world_size-th shard; the union is the same as one process's.

Example (the predictor alone, on hand-made features):
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> sample = pd.DataFrame({"clipscore": rng.random(200), "neighbour": rng.random(200),
    ...                        "nbr_image": 0.0, "nbr_text": 0.0, "caption_repeats": 1, "lint": "",
    ...                        "caption": "a red dog"})
    >>> sample["score"] = 1 - sample["clipscore"]
    >>> rest = sample.drop(columns="score").head(3).assign(clipscore=[0.05, 0.5, 0.95])
    >>> predicted = distil_scores(sample, rest, seed=0)
    >>> bool(predicted[0] > predicted[1] > predicted[2])
    True
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from curate import flagging, memorization
from curate.lint import is_severe, lint_caption, normalize
from curate.neighbours import csls_alignment, held_out_rows, neighbour_distances
from dataio.atomic import write_parquet, write_text
from dataio.errors import UsageError
from dataio.reader import Dataset, Sample, without_duplicates
from train.data import load_table
from train.distributed import World, barrier

SCORED_IN_SAMPLE = "in-sample"
SCORED_BY_INFERENCE = "inference"
SHARD_SCORES = "scores_by_shard"


@dataclass
class PoolIndex:
    """The pool's keys per shard and caption counts, read without decoding an image."""

    keys_by_shard: dict
    caption_counts: Counter
    captions: dict = field(repr=False)  # key -> primary caption
    skipped: list = field(default_factory=list)  # (key, reason) of every unreadable record

    @property
    def keys(self) -> list:
        return [key for keys in self.keys_by_shard.values() for key in keys]

    def repeats(self, key: str) -> int:
        return self.caption_counts[normalize(self.captions[key])]

    def lint(self, key: str) -> str:
        return "; ".join(lint_caption(self.captions[key], self.repeats(key)))


def pool_index(dataset: Dataset, progress: bool = True) -> PoolIndex:
    """One pass over the pool's shards, images left encoded."""
    keys_by_shard, captions, skipped, seen = {}, {}, [], {}
    for shard in tqdm(dataset.shards, desc="indexing the pool", unit="shard", disable=not progress, leave=False):
        records = list(without_duplicates(dataset.shard_records(shard, verify_images=False), seen))
        samples = [r for r in records if isinstance(r, Sample)]
        skipped += [(r.key, r.reason) for r in records if not isinstance(r, Sample)]
        keys_by_shard[shard] = [sample.key for sample in samples]
        captions.update((sample.key, sample.caption) for sample in samples)
    counts = Counter(normalize(caption) for caption in captions.values())
    return PoolIndex(keys_by_shard, counts, captions, skipped)


def with_pool_statistics(frame: pd.DataFrame, pool: PoolIndex) -> pd.DataFrame:
    """Caption frequency and lint counted over the whole pool, not over the rows in memory."""
    frame["caption_repeats"] = [pool.repeats(key) for key in frame["key"]]
    frame["lint"] = [pool.lint(key) for key in frame["key"]]
    return frame


SAMPLE_FILE = "sample.json"


def save_sample_size(models_folder: Path, size: int | None) -> None:
    """Beside the saved models: `--reuse` then knows to score the rest of the pool by inference again (and,
    for models trained on the whole pool, that it must not)."""
    path = models_folder / SAMPLE_FILE
    if size is None:
        path.unlink(missing_ok=True)
    else:
        write_text(path, json.dumps({"sample": size}))


def saved_sample_size(models_folder: Path) -> int | None:
    path = models_folder / SAMPLE_FILE
    return json.loads(path.read_text())["sample"] if path.exists() else None


def draw_sample(keys: list, size: int, seed: int) -> list:
    """`size` keys of the pool, the same ones for the same seed."""
    if size < 2 or size >= len(keys):
        raise UsageError(f"--sample {size}: choose between 2 and {len(keys) - 1} pairs of the {len(keys)} in the pool")
    chosen = np.random.default_rng(seed + 104729).choice(len(keys), size=size, replace=False)
    return sorted(keys[i] for i in chosen)


def inference_measures(per_model: list, keys: list, form: str, references: list) -> pd.DataFrame:
    """Held-out alignment (raw and hubness-corrected) and neighbour distances of pairs no model trained on: each
    averaged over the models.

    per_model: curate.memorization.ModelMeasures of every reference model on `keys`; references: per model,
    (images, captions) embeddings of more pairs it held out, searched for neighbours beside `keys`.
    """
    alignment = np.mean([getattr(m, form) for m in per_model], axis=0)
    sides = [neighbour_distances(m.image_embedding, m.caption_embedding, reference=reference)
             for m, reference in zip(per_model, references)]
    image_side = torch.stack([s[0] for s in sides]).mean(0).numpy()
    text_side = torch.stack([s[1] for s in sides]).mean(0).numpy()
    csls = torch.stack([csls_alignment(m.image_embedding, m.caption_embedding, reference=reference)
                        for m, reference in zip(per_model, references)]).mean(0).numpy()
    missing = np.full(len(keys), np.nan)
    return pd.DataFrame({
        "key": keys, "group": SCORED_BY_INFERENCE, "align_f": missing, "align_g": alignment,
        "clipmem_raw": missing, "image_mem": missing, "text_mem": missing,
        "nbr_image": image_side, "nbr_text": text_side, "neighbour": image_side + text_side, "align_csls": csls,
    })


def sample_references(sample_measures: list, plan, canary_keys=frozenset()) -> list:
    """Per model, the embeddings of the sample pairs it held out: neighbours for pairs outside the sample.
    Canaries are nobody's neighbour."""
    references = []
    for index, measures in enumerate(sample_measures):
        rows = held_out_rows(plan, index)
        rows = rows[torch.tensor([plan.scored[r] not in canary_keys for r in rows.tolist()], dtype=torch.bool)]
        references.append((measures.image_embedding[rows], measures.caption_embedding[rows]))
    return references


def score_shards(dataset: Dataset, pool: PoolIndex, sample_table, models: list, plan, sample_frame: pd.DataFrame,
                 references: list, out: Path, views: int, form: str, seed: int, world: World,
                 progress: bool) -> pd.DataFrame:
    """Score every pool pair outside the sample, shard by shard; returns all of them (every rank the same).

    sample_table: the sample's train.data Table, which holds the models' negative captions."""
    folder = out / SHARD_SCORES
    if world.is_main:
        _forget_other_runs(folder, _run_fingerprint(sample_frame, views, form, seed))
    barrier(world)
    in_sample = set(sample_table.keys)
    negatives = sorted({key for m in plan.models for key in m.negative_keys})
    negative_table = sample_table.subset(negatives)
    mine = [shard for i, shard in enumerate(dataset.shards) if i % world.world_size == world.rank]
    for shard in tqdm(mine, desc="scoring the pool", unit="shard", disable=not progress):
        path = folder / f"{shard}.parquet"
        keys = [key for key in pool.keys_by_shard.get(shard, []) if key not in in_sample]
        if path.exists() or not keys:
            continue  # finished by an earlier run (or nothing outside the sample)
        write_parquet(path, _score_shard(dataset, shard, keys, negative_table, pool, models, plan, sample_frame,
                                         references, views, form, seed))
    barrier(world)
    parts = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


FINGERPRINT_FILE = "run.json"


def _run_fingerprint(sample_frame: pd.DataFrame, views: int, form: str, seed: int) -> str:
    """What a shard's scores depend on: the models and the ranking (both show in the sample's scores) and the
    scoring settings. A shard file is reused only by a run with the same fingerprint."""
    digest = hashlib.sha256(repr((views, form, seed)).encode())
    digest.update(pd.util.hash_pandas_object(sample_frame[["key", "score"]], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _forget_other_runs(folder: Path, fingerprint: str) -> None:
    """Shard files from a run with other models or settings would be stale: remove them before scoring."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / FINGERPRINT_FILE
    if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint:
        return
    for stale in folder.glob("*.parquet"):
        stale.unlink()
    write_text(marker, json.dumps({"fingerprint": fingerprint}))


def _score_shard(dataset: Dataset, shard: str, keys: list, negative_table, pool: PoolIndex, models: list, plan,
                 sample_frame: pd.DataFrame, references: list, views: int, form: str, seed: int) -> pd.DataFrame:
    one_shard = Dataset(path=dataset.path, format=dataset.format, shards=[shard])
    table = load_table(one_shard, keys=keys, image_size=negative_table.image_size, progress=False)
    keys = list(table.keys)  # without the samples whose image could not be decoded
    # The models' negative captions live in the sample; measured beside the shard's own pairs.
    joined = table.concat(negative_table)
    per_model = [memorization.measure_model(reference, tokenizer, joined, keys, model_plan.negative_keys, views,
                                            seed, None, False)
                 for (reference, tokenizer), model_plan in zip(models, plan.models)]
    measures = inference_measures(per_model, keys, form, references)
    frame = flagging.build_scores_table(table, keys, measures, np.full(len(keys), np.nan), "clipscore", seed)
    frame = with_pool_statistics(frame, pool)
    frame["score"] = distil_scores(sample_frame, frame, seed)
    frame["scored_by"] = SCORED_BY_INFERENCE
    frame["shard"] = shard
    return frame.dropna(axis=1, how="all")


def inference_features(frame: pd.DataFrame, corrected: bool = True) -> np.ndarray:
    """What a pair outside the sample has: held-out alignment (and its hubness-corrected form, `corrected`),
    neighbour distances, caption statistics."""
    severe = frame["lint"].map(lambda text: is_severe(text.split("; ")) if text else False)
    return np.column_stack([
        frame["clipscore"], frame["neighbour"], frame["nbr_image"], frame["nbr_text"],
        np.log1p(frame["caption_repeats"]), severe.astype(float),
        frame["caption"].str.split().str.len().fillna(0),
    ] + ([frame["align_csls"]] if corrected else [])).astype(float)


def distil_scores(sample: pd.DataFrame, rest: pd.DataFrame, seed: int) -> np.ndarray:
    """The sample's ranking (its `score` as a percentile, 0-1) predicted for `rest` from inference-only features.

    Features enter as percentiles within their own set: a sample pair's held-out alignment comes from the one
    model that left it out, a pool pair's from the mean of all K, so their raw scales differ while their
    orders agree. A ridge regression on them beat gradient boosting on raw features on laion_subset
    (bench/sample.py, README).
    """
    from sklearn.linear_model import Ridge

    corrected = "align_csls" in sample and "align_csls" in rest
    predictor = Ridge(alpha=1.0, random_state=seed)
    predictor.fit(_percentiles(inference_features(sample, corrected)), sample["score"].rank(pct=True).to_numpy())
    return np.clip(predictor.predict(_percentiles(inference_features(rest, corrected))), 0.0, 1.0)


def _percentiles(features: np.ndarray) -> np.ndarray:
    return np.column_stack([pd.Series(column).rank(pct=True).to_numpy() for column in features.T])
