"""A training run's files: the per-epoch checkpoint (for resume) and the final outputs.

The run folder is also the model folder (train.models.save_model):
    checkpoint.pt          after each epoch: weights, optimizer, epoch, loss records (torch.save; loaded with
                           weights_only=True)
    train_log.json         settings, per-step losses, time, samples/s
    sample_losses.parquet  key, times seen, cumulative sample loss (csl), loss per epoch
    open_clip_config.json, open_clip_model.safetensors, clipmem.json   the model

Usage (a finished run's per-sample losses are a plain parquet file):

    csl = pandas.read_parquet("runs/base/sample_losses.parquet").set_index("key")["csl"]
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import torch

from dataio.atomic import atomic_write
from dataio.errors import UsageError
from train.config import TrainConfig
from train.models import save_model

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.json"
SAMPLE_LOSSES = "sample_losses.parquet"


def keys_digest(keys: list) -> str:
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()


def save_checkpoint(out_dir: str | Path, model, optimizer, scaler, epochs_done: int, loss_history: torch.Tensor,
                    step_losses: list, config: TrainConfig, keys: list) -> Path:
    path = Path(out_dir) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epochs_done": epochs_done,
        "loss_history": loss_history,
        "step_losses": torch.tensor(step_losses, dtype=torch.float64),
        "config": config.to_json(),
        "keys_digest": keys_digest(keys),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(out_dir: str | Path, config: TrainConfig, keys: list) -> dict | None:
    """The checkpoint in out_dir, checked against the run's settings and keys; None if there is none."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise UsageError(f"{path}: unreadable checkpoint ({type(error).__name__}); delete it to start over") from None
    saved = TrainConfig.from_json(state["config"])
    if saved != config:
        changed = [f"{k}: {v} -> {getattr(config, k)}" for k, v in saved.to_dict().items() if getattr(config, k) != v]
        raise UsageError(f"{path}: made with other settings ({'; '.join(changed)}); resume with the same "
                         "settings or train into a new --out folder")
    if state["keys_digest"] != keys_digest(keys):
        raise UsageError(f"{path}: made on another set of training keys; resume with the same data, --keys and "
                         "--heldout-frac, or train into a new --out folder")
    state["step_losses"] = state["step_losses"].tolist()
    return state


def write_run_outputs(out_dir: str | Path, result, info: dict | None = None) -> Path:
    """Save the model, the training log and the per-sample losses of a finished run into out_dir."""
    out_dir = Path(out_dir)
    save_model(result.model, out_dir, {"train": result.config.to_dict(), "train_samples": len(result.keys),
                                       **(info or {})})
    log = {
        "config": result.config.to_dict(),
        "train_samples": len(result.keys),
        "steps": len(result.step_losses),
        "seconds": round(result.seconds, 3),
        "samples_per_s": round(result.samples_per_s, 2),
        "step_losses": result.step_losses,
        "epoch_mean_loss": _epoch_means(result.loss_history),
        **(info or {}),
    }
    atomic_write(out_dir / TRAIN_LOG, lambda tmp: tmp.write_text(json.dumps(log, indent=2, default=str)))
    table = sample_loss_table(result)
    atomic_write(out_dir / SAMPLE_LOSSES, lambda tmp: table.to_parquet(tmp, index=False))
    return out_dir


def _epoch_means(history: torch.Tensor) -> list:
    means = []
    for row in history:
        seen = row[~torch.isnan(row)]
        means.append(float(seen.mean()) if len(seen) else math.nan)
    return means


def sample_loss_table(result) -> pd.DataFrame:
    history = result.loss_history
    seen = (~torch.isnan(history)).sum(0)
    return pd.DataFrame({
        "key": result.keys,
        "times_seen": seen.tolist(),
        "csl": torch.nan_to_num(history, nan=0.0).sum(0).tolist(),
        "losses": [[v for v in col if not math.isnan(v)] for col in history.T.tolist()],
    })

