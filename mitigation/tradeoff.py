"""Retrain under each mitigation strategy and report utility against memorization (table and plot).

    python cli.py tradeoff --data laion_subset --quick
    python cli.py tradeoff --data laion_subset --strategies baseline,text-aug,multi-caption,text-noise,remove \\
        --seeds 3
    python cli.py tradeoff --strategies baseline,text-noise:sigma=0.3,remove:by=random:count=100

Every strategy runs through the real path: `mitigate` writes a mitigated copy with its recipe, and the
models train on that copy with the recipe's settings. Memorization is the paper protocol's mean CLIPMem
over one fixed candidate set (f on S_S+S_C, g on S_S+S_I, both trained under the strategy); utility is
measured on one fixed held-out split that no model trains on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from curate import memorization
from curate.protocols import paper_plan
from dataio.atomic import write_json
from dataio.errors import UsageError
from dataio.paths import tradeoff_folder
from mitigation import tradeoff_report
from mitigation.strategies import mitigate
from train.config import TrainConfig
from train.data import load_table, split_heldout
from train.evaluate import evaluate
from train.loop import train_clip

DEFAULT_STRATEGIES = "baseline,text-aug,multi-caption,text-noise,remove"
QUICK = {"samples": 1500, "epochs": 5, "seeds": 2}
# `remove` with no amount removes the paper's ~100 most memorized pairs.
REMOVE_DEFAULT = {"count": 100}
# Utility metrics reported per run (train.evaluate names); the plot's y axis is the first.
UTILITY = ["linear_probe_acc", "zeroshot_words_acc", "i2t_r1_caption", "i2t_r5_caption"]


@dataclass
class StrategySpec:
    """One row of the trade-off: a strategy name (or `baseline`) and its options, e.g. remove:by=random:count=100."""

    label: str
    names: list
    options: dict = field(default_factory=dict)


def parse_strategy_list(text: str) -> list:
    """'baseline,text-noise:sigma=0.3,remove:by=random:count=100' -> StrategySpecs (labels kept verbatim)."""
    specs = []
    for item in [part.strip() for part in text.split(",") if part.strip()]:
        name, *pairs = item.split(":")
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise UsageError(f"strategy option {pair!r} in {item!r} must look like name=value")
            options[key.replace("-", "_")] = _parse_value(value)
        specs.append(StrategySpec(item, [] if name == "baseline" else name.split("+"), options))
    if not specs:
        raise UsageError("--strategies is empty; e.g. --strategies baseline,text-noise")
    return specs


def _parse_value(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


@dataclass
class TradeoffResult:
    """One row per (strategy, seed) run, and the files written: csv, markdown, plot."""

    rows: list
    paths: dict
    settings: dict


def tradeoff(data, strategies=DEFAULT_STRATEGIES, out=None, *, seeds: int = 3, epochs: int = 10,
             samples: int | None = None, quick: bool = False, model: str = "clipmem-tiny", batch_size: int = 128,
             lr: float = 5e-4, heldout_frac: float = 0.1, scores=None, progress: bool = True) -> TradeoffResult:
    """Retrain under each strategy and measure memorization and utility; write tradeoff.csv/.md/.png.

    strategies: a comma-separated string or list, each item a strategy (or `baseline`) with options,
    e.g. "baseline,text-noise:sigma=0.3,remove:by=random:count=100". quick: QUICK's subsample, epochs and
    seeds wherever the arguments are left at their defaults. scores: flag's scores.parquet for `remove`
    (default DATA.clipmem/scores.parquet). Default OUT: DATA.tradeoff beside the data.
    """
    specs = parse_strategy_list(strategies if isinstance(strategies, str) else ",".join(strategies))
    settings = resolve_settings(seeds, epochs, samples, quick, model, batch_size, lr, heldout_frac, scores)
    out = Path(out) if out else tradeoff_folder(data)
    rows = run_tradeoff(data, specs, settings, out, progress=progress)
    paths = tradeoff_report.write_all(out, rows, settings)
    return TradeoffResult(rows, paths, settings)


def resolve_settings(seeds: int, epochs: int, samples: int | None, quick: bool, model: str, batch_size: int,
                     lr: float, heldout_frac: float, scores) -> dict:
    if quick:
        seeds = QUICK["seeds"] if seeds == 3 else seeds
        epochs = QUICK["epochs"] if epochs == 10 else epochs
        samples = samples or QUICK["samples"]
    if seeds < 1 or epochs < 1:
        raise UsageError("--seeds and --epochs must be at least 1")
    return {"seeds": seeds, "epochs": epochs, "samples": samples, "model": model, "batch_size": batch_size,
            "lr": lr, "heldout_frac": heldout_frac, "scores": str(scores) if scores else None}


def run_tradeoff(data, specs: list, settings: dict, out: Path, progress: bool = True) -> list:
    """Train f and g per (strategy, seed) and measure them; returns one dict per run."""
    out.mkdir(parents=True, exist_ok=True)
    base = load_table(data, progress=progress)
    keys = _subsample(base.keys, settings["samples"])
    pool, heldout = split_heldout(keys, settings["heldout_frac"], seed=0)
    plan = paper_plan(pool, seed=0)
    rows = []
    for spec in specs:
        data_for_spec, recipe = _mitigated_copy(data, spec, settings, out, progress)
        table = base if data_for_spec is None else load_table(data_for_spec, progress=progress)
        for seed in range(settings["seeds"]):
            if progress:
                print(f"[tradeoff] {spec.label}, seed {seed + 1}/{settings['seeds']}", flush=True)
            rows.append(_one_run(spec, seed, settings, recipe, table, base, plan, heldout, out, progress))
    return rows


def _subsample(keys: list, samples: int | None) -> list:
    if not samples or samples >= len(keys):
        return list(keys)
    chosen = np.random.default_rng(0).choice(len(keys), size=samples, replace=False)
    return [keys[i] for i in sorted(chosen)]


def _mitigated_copy(data, spec: StrategySpec, settings: dict, out: Path, progress: bool):
    """Baseline trains on the data as it is; any other strategy on what `mitigate` writes."""
    if not spec.names:
        return None, {}
    options = dict(spec.options)
    if "remove" in spec.names:
        if not {"count", "frac", "threshold"} & set(options):
            options.update(REMOVE_DEFAULT)
        if settings.get("scores") and "scores" not in options:
            options["scores"] = settings["scores"]
    try:
        result = mitigate(data, spec.names, out / "data" / _file_label(spec.label), overwrite=True, progress=progress,
                          **options)
    except UsageError as error:
        raise UsageError(f"strategy {spec.label!r}: {error}") from None
    return result.path, result.recipe.get("training", {})


def _one_run(spec, seed, settings, recipe, table, base, plan, heldout, out: Path, progress: bool) -> dict:
    config = TrainConfig(model=settings["model"], epochs=settings["epochs"], batch_size=settings["batch_size"],
                         lr=settings["lr"], seed=seed)
    config = replace(config, **{k: v for k, v in recipe.items() if hasattr(config, k)})
    present = set(table.keys)
    started = time.time()
    trained = [train_clip(table, [k for k in m.train_keys if k in present], config, progress=progress)
               for m in plan.models]
    measures = [memorization.measure_model(r.model, r.tokenizer, base, plan.scored, m.negative_keys, seed=0,
                                           progress=progress)
                for r, m in zip(trained, plan.models)]
    clipmem = memorization.combine_models(measures, plan)["clipmem_raw"]
    utility = evaluate(trained[0].model, trained[0].tokenizer, base, heldout)
    row = {
        "strategy": spec.label, "seed": seed, "memorization": float(clipmem.mean()),
        "memorization_median": float(clipmem.median()),
        "removed": len([k for k in plan.models[0].train_keys if k not in present]),
        **{name: utility.get(name) for name in UTILITY},
        "seconds": round(time.time() - started, 1),
    }
    config_path = out / "configs" / f"{_file_label(spec.label)}_seed{seed}.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(config_path, {"strategy": spec.label, "mitigation_options": spec.options, "training": config.to_dict(),
                             "settings": settings, "result": row})
    return row


def _file_label(label: str) -> str:
    """A strategy label as a file name: remove:by=random -> remove_by-random."""
    return label.replace(":", "_").replace("=", "-")
