"""Sample, then infer: score a pool far larger than the reference models train on.

The kfold reference models train on a sample of N pairs, which get every score as usual. Every other pair
of the pool is held out by ALL K models, so their mean alignment is a clean held-out score; with the
neighbour score in each model's space, caption frequency over the whole pool and caption lint, these
inference-only features feed a small predictor fitted on the sample, which maps them to the sample's full
ranking (distillation: the sample's ranking also rests on csl, which only training can give).

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

import numpy as np
import pandas as pd
import torch

from curate import memorization
from curate.lint import is_severe
from curate.neighbours import neighbour_distances
from dataio.errors import UsageError

SCORED_IN_SAMPLE = "in-sample"
SCORED_BY_INFERENCE = "inference"


def draw_sample(keys: list, size: int, seed: int) -> list:
    """`size` keys of the pool, the same ones for the same seed."""
    if size < 2 or size >= len(keys):
        raise UsageError(f"--sample {size}: choose between 2 and {len(keys) - 1} pairs of the {len(keys)} in the pool")
    chosen = np.random.default_rng(seed + 104729).choice(len(keys), size=size, replace=False)
    return sorted(keys[i] for i in chosen)


def inference_measures(per_model: list, keys: list, form: str) -> pd.DataFrame:
    """Held-out alignment and neighbour distances of pairs no model trained on: each averaged over the models.

    per_model: curate.memorization.ModelMeasures of every reference model on `keys`.
    """
    alignment = np.mean([getattr(m, form) for m in per_model], axis=0)
    sides = [neighbour_distances(m.image_embedding, m.caption_embedding) for m in per_model]
    image_side = torch.stack([s[0] for s in sides]).mean(0).numpy()
    text_side = torch.stack([s[1] for s in sides]).mean(0).numpy()
    missing = np.full(len(keys), np.nan)
    return pd.DataFrame({
        "key": keys, "group": SCORED_BY_INFERENCE, "align_f": missing, "align_g": alignment,
        "clipmem_raw": missing, "image_mem": missing, "text_mem": missing,
        "nbr_image": image_side, "nbr_text": text_side, "neighbour": image_side + text_side,
    })


def measure_pool(models: list, plan, table, keys: list, views: int, seed: int, progress: bool) -> list:
    """Every reference model's measures on `keys`, with each model's own held-out negatives."""
    return [memorization.measure_model(reference, tokenizer, table, keys, model_plan.negative_keys, views, seed,
                                       None, progress)
            for (reference, tokenizer), model_plan in zip(models, plan.models)]


def inference_features(frame: pd.DataFrame) -> np.ndarray:
    """What a pair outside the sample has: held-out alignment, neighbour distances, caption statistics."""
    severe = frame["lint"].map(lambda text: is_severe(text.split("; ")) if text else False)
    return np.column_stack([
        frame["clipscore"], frame["neighbour"], frame["nbr_image"], frame["nbr_text"],
        np.log1p(frame["caption_repeats"]), severe.astype(float),
        frame["caption"].str.split().str.len().fillna(0),
    ]).astype(float)


def distil_scores(sample: pd.DataFrame, rest: pd.DataFrame, seed: int) -> np.ndarray:
    """The sample's `score` (its full ranking, 0-1) predicted for `rest` from inference-only features."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    predictor = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                              min_samples_leaf=10, random_state=seed)
    predictor.fit(inference_features(sample), sample["score"].to_numpy())
    return np.clip(predictor.predict(inference_features(rest)), 0.0, 1.0)
