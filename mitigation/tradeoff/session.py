"""What the trade-off and the removal curve share: their settings, and a session that holds the data, the
fixed splits, the output folder and the log of finished runs.

A finished run is filed under a hash of everything that decides its result besides its label and seed
(the session's `identity`: the data's path and content fingerprint, the downstream images, the training
and evaluation settings), so a rerun with the same settings finds it, and a changed setting reruns it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dataio import paths as data_paths
from dataio.errors import UsageError
from dataio.reader import open_dataset
from mitigation.tradeoff.log import RunLog
from mitigation.tradeoff.experiment import Experiment, downstream_table, fingerprint, make_experiment
from train.config import TrainConfig
from train.data import Table, load_table

# In the run key of every run that removes pairs: rows filed before removal kept the baseline's batch order
# (train_clip's order_keys) were trained on an unrelated order, and are rerun rather than mixed in.
REMOVAL_ORDER = "baseline order minus the removed pairs"
# Settings that decide how many runs there are or how they are judged, never one run's result.
NOT_IN_RUN_KEY = {"seeds", "scores", "min_seeds", "max_seeds", "budget_minutes", "looks", "alpha"}
# `quick`: a subsample, fewer epochs; wherever the arguments are left at their defaults.
QUICK = {"samples": 1500, "epochs": 5, "seeds": 3}


def resolve_settings(data, seeds: int, epochs: int, samples: int | None, quick: bool, model: str, batch_size: int,
                     lr: float, eval_max: int, eval_frac: float, probe_folds: int, scores) -> dict:
    """The run settings as a json-able dict; quick fills in what was left at its default."""
    open_dataset(data)  # a wrong --data fails here, before anything else
    if quick:
        seeds = QUICK["seeds"] if seeds == 3 else seeds
        epochs = QUICK["epochs"] if epochs == 10 else epochs
        samples = samples or QUICK["samples"]
    if seeds < 1 or epochs < 1:
        raise UsageError("--seeds and --epochs must be at least 1")
    if probe_folds < 2:
        raise UsageError(f"--probe-folds must be at least 2, got {probe_folds}")
    if not 0 < eval_frac < 1 or eval_max < 2:
        raise UsageError(f"the evaluation split needs 0 < --eval-frac < 1 and --eval-size >= 2 "
                         f"(got {eval_frac}, {eval_max})")
    scores = Path(scores) if scores else data_paths.scores_path(data)
    return {"seeds": seeds, "epochs": epochs, "samples": samples, "model": model, "batch_size": batch_size, "lr": lr,
            "eval_max": eval_max, "eval_frac": eval_frac, "probe_folds": probe_folds, "scores": str(scores)}


@dataclass
class Session:
    """One trade-off (or removal curve) in progress: its inputs, fixed splits, output folder and run log."""

    data: Path
    settings: dict
    experiment: Experiment
    identity: dict  # what decides every run's result besides its label and seed (hashed into the run key)
    out: Path
    log: RunLog
    progress: bool


def start_session(data, settings: dict, downstream, out: Path, log_name: str, label: str, progress: bool) -> Session:
    """Load the data, draw the fixed splits, open the log of finished runs (nothing is written yet)."""
    base = load_table(data, progress=progress)
    if downstream is not None and not isinstance(downstream, Table):
        downstream = downstream_table(downstream, base.image_size)
    experiment = make_experiment(base, settings["samples"], settings["eval_max"], settings["eval_frac"], downstream,
                                 settings["probe_folds"])
    identity = {"data": str(Path(data).resolve()), "data_fingerprint": fingerprint(base),
                "downstream": fingerprint(downstream) if downstream is not None else None,
                **{k: v for k, v in settings.items() if k not in NOT_IN_RUN_KEY}}
    return Session(Path(data), settings, experiment, identity, out, RunLog(out / log_name, label), progress)


def scores_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()




def training_config(settings: dict, seed: int) -> TrainConfig:
    """The training settings every run of a session shares, with this run's seed."""
    return TrainConfig(model=settings["model"], epochs=settings["epochs"], batch_size=settings["batch_size"],
                       lr=settings["lr"], seed=seed)
