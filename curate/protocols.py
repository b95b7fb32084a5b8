"""Which keys each reference model trains on, under the two CLIPMem protocols.

kfold (default): K folds; model k trains on every fold but k. A key in fold k gets A_g from model k and
A_f from the mean of the other K-1 models, so K trainings score every key exactly once.
paper: the pool splits into S_S (shared), S_C (candidates), S_I (independent), S_E (negatives, never
trained); f trains on S_S+S_C, g on S_S+S_I, and only S_C is scored.

Example:
    >>> from curate.protocols import kfold_plan
    >>> plan = kfold_plan([f"{i:04d}" for i in range(8)], folds=2, seed=0)
    >>> [len(m.train_keys) for m in plan.models], len(plan.scored)
    ([4, 4], 8)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dataio.errors import UsageError

PROTOCOLS = ("kfold", "paper")
MIN_PER_FOLD = 2
NEGATIVES_MAX = 512
PAPER_FRACTIONS = {"candidates": 0.1, "independent": 0.1, "negatives": 0.05}


@dataclass
class ModelPlan:
    name: str
    train_keys: list
    negative_keys: list  # captions (and images) this model never trained on, for the contrastive form


@dataclass
class Plan:
    protocol: str
    models: list
    scored: list                       # keys that get a score
    with_model: dict                   # key -> indices of models that trained on it (A_f)
    without_model: dict                # key -> indices of models that did not (A_g)
    groups: dict = field(default_factory=dict)  # key -> fold number or split name, for the scores table


def kfold_plan(keys: list, folds: int = 4, seed: int = 0) -> Plan:
    """Balanced random folds; each model's negatives are drawn from its own held-out fold."""
    keys = sorted(keys)
    if folds < 2:
        raise UsageError("--folds must be at least 2 (one model with the sample, one without)")
    if len(keys) < folds * MIN_PER_FOLD:
        raise UsageError(
            f"{len(keys)} samples are too few for {folds} folds (need at least {folds * MIN_PER_FOLD}); "
            "use fewer --folds or more data"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    fold_of = {keys[i]: int(position % folds) for position, i in enumerate(order)}
    members = [[k for k in keys if fold_of[k] == f] for f in range(folds)]
    models = [
        ModelPlan(
            name=f"fold{f}",
            train_keys=[k for k in keys if fold_of[k] != f],
            negative_keys=_sample(members[f], NEGATIVES_MAX, rng),
        )
        for f in range(folds)
    ]
    with_model = {k: [j for j in range(folds) if j != fold_of[k]] for k in keys}
    without_model = {k: [fold_of[k]] for k in keys}
    return Plan("kfold", models, keys, with_model, without_model, groups=fold_of)


def paper_plan(keys: list, seed: int = 0, candidates: int | None = None, independent: int | None = None,
               negatives: int | None = None) -> Plan:
    """S_S / S_C / S_I / S_E split; sizes default to 10 % / 10 % / 5 % of the pool (the paper: 5k each of 80k)."""
    keys = sorted(keys)
    n = len(keys)
    sizes = {
        "candidates": candidates if candidates is not None else int(n * PAPER_FRACTIONS["candidates"]),
        "independent": independent if independent is not None else int(n * PAPER_FRACTIONS["independent"]),
        "negatives": negatives if negatives is not None else int(n * PAPER_FRACTIONS["negatives"]),
    }
    if min(sizes.values()) < MIN_PER_FOLD or sum(sizes.values()) >= n:
        raise UsageError(f"{n} samples are too few for the paper protocol's splits {sizes}; use --protocol kfold")
    order = [keys[i] for i in np.random.default_rng(seed).permutation(n)]
    c, i, e = sizes["candidates"], sizes["independent"], sizes["negatives"]
    split = {"candidates": order[:c], "independent": order[c:c + i], "negatives": order[c + i:c + i + e],
             "shared": order[c + i + e:]}
    models = [
        ModelPlan("f", split["shared"] + split["candidates"], split["negatives"]),
        ModelPlan("g", split["shared"] + split["independent"], split["negatives"]),
    ]
    scored = sorted(split["candidates"])
    groups = {k: name for name, members in split.items() for k in members}
    return Plan("paper", models, scored, {k: [0] for k in scored}, {k: [1] for k in scored}, groups=groups)


def _sample(keys: list, limit: int, rng: np.random.Generator) -> list:
    if len(keys) <= limit:
        return list(keys)
    return [keys[i] for i in sorted(rng.choice(len(keys), size=limit, replace=False))]
