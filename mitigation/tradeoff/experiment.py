"""The fixed pieces every trade-off run shares: the evaluation split, the training pool, the removal of
the most suspect training pairs, and the utility measurements.

The evaluation split is drawn first, from all keys, by a stable hash of the key (train.data.split_heldout):
about `eval_max` pairs or `eval_frac` of the data, whichever is smaller. No run trains on it, and its
injected pairs (json `injected`) are left out of it, so utility is measured on clean pairs only. The
training pool is the rest, subsampled when asked; the paper protocol's plan is made on that pool.

Example:
    >>> keys = [f"{i:05d}" for i in range(20000)]
    >>> split = evaluation_split(keys, injected=set(keys[::10]))
    >>> 800 < len(split.eval_keys) < 1000, set(split.eval_keys) & set(keys[::10]), split.injected_left_out > 0
    (True, set(), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from curate.protocols import Plan, paper_plan
from curate.rankings import RANKINGS, resolve_ranking
from dataio.errors import DataError
from mitigation.remove import load_scores, select_removals
from train.data import Table, decode_image, split_heldout, table_from_tensors
from train.evaluate import encode_images, evaluate, linear_probe_accuracy

EVAL_MAX = 1000
EVAL_FRAC = 0.15
PROBE_FOLDS = 5
# Utility metrics per run (train.evaluate names, the linear probe replaced by the cross-validated one).
UTILITY = ["linear_probe_acc", "downstream_probe_acc", "zeroshot_words_acc", "i2t_r1_caption", "i2t_r5_caption"]


@dataclass
class Split:
    eval_keys: list        # clean pairs no run trains on
    pool: list             # everything a run may train on
    injected_left_out: int  # injected pairs that fell on the evaluation side: used by nothing


def evaluation_split(keys: list, injected: set = frozenset(), eval_max: int = EVAL_MAX,
                     eval_frac: float = EVAL_FRAC) -> Split:
    """A key's side depends only on the key (and the two sizes' ratio to len(keys)), never on a strategy."""
    frac = min(eval_frac, eval_max / max(len(keys), 1))
    pool, heldout = split_heldout(keys, frac=frac, seed=0)
    clean = [k for k in heldout if k not in injected]
    return Split(clean, pool, len(heldout) - len(clean))


def subsample(keys: list, samples: int | None) -> list:
    """A fixed random subset (seed 0) of `samples` keys, in input order; all keys when samples is None."""
    if not samples or samples >= len(keys):
        return list(keys)
    chosen = np.random.default_rng(0).choice(len(keys), size=samples, replace=False)
    return [keys[i] for i in sorted(chosen)]


def injected_keys(table: Table) -> set:
    """Keys whose json records an injected (swapped) caption."""
    return {key for key, meta in zip(table.keys, table.meta) if meta.get("injected")}


@dataclass
class Experiment:
    """What all runs of one trade-off share."""

    base: Table                  # the data as it is: memorization and utility are measured on it
    split: Split
    pool: list                   # the training pool, subsampled when asked (the removal curve trains on it)
    plan: Plan                   # paper protocol on the pool: f on S_S+S_C, g on S_S+S_I, S_C scored
    injected: set
    downstream: Table | None = None
    probe_folds: int = PROBE_FOLDS
    training_keys: list = field(init=False)  # f's and g's keys together: what removal ranks and cuts

    def __post_init__(self):
        trained = set().union(*(m.train_keys for m in self.plan.models))
        self.training_keys = sorted(trained)


def make_experiment(base: Table, samples: int | None, eval_max: int, eval_frac: float,
                    downstream: Table | None, probe_folds: int) -> Experiment:
    injected = injected_keys(base)
    split = evaluation_split(list(base.keys), injected, eval_max, eval_frac)
    if len(split.eval_keys) < 2:
        raise DataError(f"only {len(split.eval_keys)} clean pairs for the evaluation split; give more data")
    pool = subsample(split.pool, samples)
    return Experiment(base, split, pool, paper_plan(pool, seed=0), injected, downstream, probe_folds)


@dataclass
class Removal:
    """The pairs a removal takes out of the training keys."""

    keys: list     # removed, most suspect first
    injected: int  # how many of them were injected swaps


def removal(training_keys: list, injected: set, scores_path, data, by: str, count: int | None = None,
            frac: float | None = None, threshold: float | None = None) -> Removal:
    """The top of `training_keys` by ranking `by` of the flag scores: only pairs a run would train on are
    ranked, so `count` pairs leave the training data, whatever the rest of the dataset holds."""
    ranking = RANKINGS[resolve_ranking(by)]
    values = load_scores(scores_path, data, ranking.column)
    values = values[values.index.isin(set(training_keys))]
    if len(values.dropna()) < len(training_keys) / 2:
        raise DataError(f"{scores_path}: only {len(values.dropna())} of {len(training_keys)} training keys have a "
                        f"{ranking.column} score; these scores come from other data: rerun flag")
    chosen = select_removals(values, ranking.high_is_suspect, count, frac, threshold)
    keys = list(chosen.index)
    return Removal(keys, sum(k in injected for k in keys))


def downstream_table(items, image_size: int = 64) -> Table:
    """A labeled image set no run trains on, from items with `image_bytes` and `category` (e.g. the synthetic
    shapes of demo.synthetic.generate): the downstream linear probe's data."""
    items = list(items)
    images = torch.from_numpy(np.stack([decode_image(item.image_bytes, image_size) for item in items]))
    labels = [item.category for item in items]
    return table_from_tensors([f"downstream{i:06d}" for i in range(len(items))], images, labels,
                              [{"category": label} for label in labels])


def utility(model, tokenizer, experiment: Experiment) -> dict:
    """train.evaluate's metrics on the evaluation split, with the linear probe cross-validated over
    `probe_folds` folds, and the downstream probe when the experiment has downstream images."""
    base, keys = experiment.base, experiment.split.eval_keys
    # The probes' many small BLAS calls run 5-10x slower on 2 threads than on one (measured on 2 busy cores).
    with threadpool_limits(1, user_api="blas"):
        metrics = evaluate(model, tokenizer, base, keys)
        metrics["linear_probe_acc"] = probe(model, base, keys, experiment.probe_folds)
        if experiment.downstream is not None:
            metrics["downstream_probe_acc"] = probe(model, experiment.downstream, experiment.downstream.keys,
                                                    experiment.probe_folds)
    return metrics


def probe(model, table: Table, keys: list, folds: int, label_field: str = "category") -> float | None:
    rows = table.rows(keys).tolist()
    labeled = [(key, row) for key, row in zip(keys, rows) if table.meta[row].get(label_field) not in (None, "")]
    if len(labeled) < folds:
        return None
    features = encode_images(model, table.images[torch.tensor([row for _, row in labeled])])
    labels = [table.meta[row][label_field] for _, row in labeled]
    return linear_probe_accuracy(features, labels, [key for key, _ in labeled], folds=folds)


def fingerprint(table: Table) -> str:
    """A short hash of what the runs learn from: every key, its captions and its injected flag."""
    frame = pd.DataFrame({"key": table.keys, "captions": ["\n".join(c) for c in table.captions],
                          "injected": [bool(m.get("injected")) for m in table.meta]})
    return f"{int(pd.util.hash_pandas_object(frame, index=False).sum()) & (2**64 - 1):016x}"
