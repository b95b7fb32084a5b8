"""Train the reference models a protocol plan asks for, or load the ones a previous run saved.

Saved layout under OUT/models/: plan.json (protocol, seed, the keys each model trained on and its
negatives) and one open_clip model folder per model with csl.parquet (its cumulative sample losses).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from curate.protocols import ModelPlan, Plan
from dataio.atomic import write_parquet, write_text
from dataio.errors import UsageError
from train.config import TrainConfig
from train.distributed import barrier, init_distributed
from train.loop import train_clip
from train.models import load_model, save_model

PLAN_FILE = "plan.json"
CSL_FILE = "csl.parquet"


def train_reference_models(table, plan: Plan, config: TrainConfig, folder: Path, progress: bool = True) -> tuple:
    """Every model from the same initial weights and settings (the config's seed), saved as it finishes.

    A run killed part way and started again with the same plan and settings trains only the models it had
    not saved yet. Under torchrun every process trains each model together; the first one writes.
    """
    world = init_distributed(config.device)
    folder.mkdir(parents=True, exist_ok=True)
    resumable = _same_plan(folder / PLAN_FILE, plan, config)
    if world.is_main and not resumable:
        _write_plan(plan, config, folder / PLAN_FILE)  # first: a later start can tell which models are its own
    barrier(world)
    models, csl, seconds = [], [], []
    for index, model_plan in enumerate(plan.models):
        model_folder = folder / model_plan.name
        if resumable and (model_folder / CSL_FILE).exists():
            if progress:
                print(f"reference model {index + 1}/{len(plan.models)} ({model_plan.name}): saved by an earlier "
                      "run with the same plan, reused", flush=True)
            model, tokenizer, _info = load_model(model_folder)
            models.append((model, tokenizer))
            csl.append(_read_csl(model_folder / CSL_FILE))
            continue
        if progress:
            print(f"training reference model {index + 1}/{len(plan.models)} ({model_plan.name}) "
                  f"on {len(model_plan.train_keys)} samples", flush=True)
        started = time.time()
        result = train_clip(table, model_plan.train_keys, config, progress=progress)
        seconds.append(time.time() - started)
        losses = result.csl()
        if world.is_main:
            save_model(result.model, model_folder, {"training": config.to_dict(), "plan_model": model_plan.name})
            _write_csl(losses, model_folder / CSL_FILE)  # last: its presence marks a finished model
        barrier(world)
        models.append((result.model, result.tokenizer))
        csl.append(losses)
    return models, csl, seconds


def _same_plan(path: Path, plan: Plan, config: TrainConfig) -> bool:
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(_plan_json(plan, config)))
    except ValueError:
        return False


def load_reference_models(folder: Path, keys: list) -> tuple:
    """The models, csl and plan a previous run saved; refuses a plan made for other data."""
    plan_path = folder / PLAN_FILE
    if not plan_path.exists():
        raise UsageError(f"{plan_path}: no saved reference models; run flag once without --reuse")
    saved = json.loads(plan_path.read_text())
    plan = plan_from_json(saved)
    missing = sorted(set(plan.scored) - set(keys))
    if missing:
        raise UsageError(f"{plan_path}: the saved models were trained for other data ({len(missing)} scored keys "
                         f"such as {missing[0]} are not in --data); run flag without --reuse")
    models, csl = [], []
    for model_plan in plan.models:
        model, tokenizer, _info = load_model(folder / model_plan.name)
        models.append((model, tokenizer))
        csl.append(_read_csl(folder / model_plan.name / CSL_FILE))
    return plan, TrainConfig.from_dict(saved["training"]), models, csl


def _write_plan(plan: Plan, config: TrainConfig, path: Path) -> None:
    write_text(path, json.dumps(_plan_json(plan, config)))


def _plan_json(plan: Plan, config: TrainConfig) -> dict:
    return {
        "protocol": plan.protocol,
        "training": config.to_dict(),
        "scored": plan.scored,
        "with_model": plan.with_model,
        "without_model": plan.without_model,
        "groups": plan.groups,
        "models": [{"name": m.name, "train_keys": m.train_keys, "negative_keys": m.negative_keys} for m in plan.models],
    }


def plan_from_json(data: dict) -> Plan:
    models = [ModelPlan(m["name"], m["train_keys"], m["negative_keys"]) for m in data["models"]]
    return Plan(data["protocol"], models, data["scored"], data["with_model"], data["without_model"], data["groups"])


def _write_csl(losses: dict, path: Path) -> None:
    write_parquet(path, pd.DataFrame({"key": list(losses), "csl": list(losses.values())}))


def _read_csl(path: Path) -> dict:
    if not path.exists():
        return {}
    frame = pd.read_parquet(path)
    return dict(zip(frame["key"], frame["csl"]))
