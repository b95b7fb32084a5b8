"""Retrain under each mitigation strategy and report utility against memorization, with a verdict.

    python cli.py tradeoff --data laion_subset --quick
    python cli.py tradeoff --data laion_subset --strategies baseline,text-aug,multi-caption,text-noise,remove
    python cli.py tradeoff --strategies baseline,text-noise:sigma=0.3,remove:by=random:count=100,multi-caption+text-aug

Each strategy runs through the real path: `mitigate` writes a copy with its recipe and the models train
on it with the recipe's settings; `remove` is applied to the pairs the run trains on (the top N of its
training keys by the flag run's ranking), so N pairs really leave the training data. Memorization is
the paper protocol's mean CLIPMem over one candidate set (f on S_S+S_C, g on S_S+S_I, both trained under
the strategy; removed candidates are not scored). Utility is measured on a fixed clean evaluation split
no run trains on (mitigation.tradeoff.experiment), each strategy compared with the baseline of the same
seed (mitigation.tradeoff.stats: gain, loss, no change or inconclusive per metric). Every strategy, option
and input is checked before the first training; each finished run is added to tradeoff.csv at once, and a
rerun with the same settings skips it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from curate import memorization
from curate.rankings import RANKINGS, resolve_ranking
from dataio.atomic import write_json, write_parquet
from dataio.errors import DataError, UsageError
from dataio.keyed import data_captions
from dataio.paths import tradeoff_folder
from dataio.reader import open_dataset
from mitigation.base import Options
from mitigation.remove import check_amount, check_scores_fit, load_scores
from mitigation.strategies import STRATEGIES, check_options, mitigate, options_from
from mitigation.tradeoff import report
from mitigation.tradeoff.log import settings_hash
from mitigation.tradeoff.sequential import SeedPlan, Stopping, fits_budget, next_round, open_outcomes, seed_plan
from mitigation.tradeoff.session import (
    REMOVAL_ORDER,
    Session,
    resolve_settings,
    scores_sha256,
    start_session,
    training_config,
)
from mitigation.tradeoff.experiment import (
    EVAL_FRAC,
    EVAL_MAX,
    PROBE_FOLDS,
    UTILITY,
    Experiment,
    removal,
    utility,
)
from mitigation.tradeoff.stats import (
    BASELINE,
    MATCHED_BASELINE,
    MATCHED_CANDIDATES,
    REMOVED_BASELINE,
    resolve_effects,
)
from train.data import Table, load_table
from train.loop import train_clip

DEFAULT_STRATEGIES = "baseline,text-aug,multi-caption,text-noise,remove"
# `remove` with no amount removes the paper's ~100 most memorized pairs.
REMOVE_DEFAULT = {"count": 100}
REMOVE_OPTIONS = set(STRATEGIES["remove"].options)
clock = time.monotonic  # the time budget's clock (a name of its own so tests can move it)


@dataclass
class StrategySpec:
    """One row of the trade-off: strategy names joined by + (or `baseline`) and options, e.g. remove:count=100."""

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
        names = [] if name == "baseline" else name.split("+")
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise UsageError(f"unknown strategy {', '.join(unknown)} in {item!r}; choose from baseline, "
                             f"{', '.join(STRATEGIES)} (join with + to combine)")
        if not names and options:
            raise UsageError(f"{item!r}: baseline takes no options")
        specs.append(StrategySpec(item, names, options))
    if not specs:
        raise UsageError("--strategies is empty; e.g. --strategies baseline,text-noise")
    labels = [s.label for s in specs]
    if len(set(labels)) < len(labels):
        raise UsageError(f"--strategies names {max(labels, key=labels.count)!r} twice")
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
    """One row per (strategy, seed) run, the files written (csv, markdown, plot) and the settings."""

    rows: list
    paths: dict
    settings: dict
    effects: dict  # the smallest effect that matters per metric (mitigation.tradeoff.stats.EFFECTS with the user's values)
    stopping: Stopping | None = None  # with seeds="auto": why it stopped, seeds per strategy, what stayed open


def tradeoff(data, strategies=DEFAULT_STRATEGIES, out=None, *, seeds: int | str = 3, epochs: int = 10,
             samples: int | None = None, quick: bool = False, model: str = "clipmem-tiny", batch_size: int = 128,
             lr: float = 5e-4, eval_max: int = EVAL_MAX, eval_frac: float = EVAL_FRAC, probe_folds: int = PROBE_FOLDS,
             scores=None, downstream=None, min_effects: dict | None = None, max_seeds: int | None = None,
             budget_minutes: float | None = None, progress: bool = True) -> TradeoffResult:
    """Retrain under each strategy, measure memorization and utility; write tradeoff.csv/.md/.png.

    strategies: a comma-separated string or a list, each item a strategy (or `baseline`, or names joined by
    +) with options, e.g. "baseline,text-noise:sigma=0.3,remove:by=random:count=100". quick: the subsample,
    epochs and seeds of mitigation.tradeoff.session.QUICK wherever those arguments are left at their defaults.
    scores: flag's scores.parquet for `remove` (default DATA.clipmem/scores.parquet). downstream: labeled
    images no run trains on (a train.data Table, or items with `image_bytes` and `category`) for a second
    linear probe. min_effects: the smallest change that matters per metric, e.g. {"linear_probe_acc": 0.02}
    (mitigation.tradeoff.stats.EFFECTS for the rest); it decides outcomes and the verdict, not the runs. Default OUT:
    DATA.tradeoff beside the data. Runs already in OUT/tradeoff.csv with the same settings are not run again.
    seeds="auto": every strategy gets MIN_SEEDS seeds, then seeds are added to the baseline and to the
    strategies with an inconclusive outcome until none is left, max_seeds is reached or the next round would
    overrun budget_minutes; every test then runs at the sequential level (mitigation.tradeoff.sequential).
    """
    specs = parse_strategy_list(strategies if isinstance(strategies, str) else ",".join(strategies))
    effects = resolve_effects(min_effects)
    plan = seed_plan(seeds, max_seeds, budget_minutes)
    if plan.auto and BASELINE not in [s.label for s in specs]:
        raise UsageError("--seeds auto adds seeds until each strategy's comparison with the baseline settles; "
                         "add baseline to --strategies")
    settings = resolve_settings(data, plan.fixed or plan.min_seeds, epochs, samples, quick, model, batch_size, lr,
                                eval_max, eval_frac, probe_folds, scores)
    settings.update(plan.settings())
    for spec in specs:
        check_spec(spec, data, settings)
    out = Path(out) if out else tradeoff_folder(data)
    session = start_session(data, settings, downstream, out, "tradeoff.csv", "strategy", progress)
    if plan.auto:
        rows, stopping = run_sequential(session, specs, plan, effects)
    else:
        rows, stopping = with_matched_baseline(run_tradeoff(session, specs), out), None
    for row in rows:  # tradeoff.csv carries the comparison the report makes
        session.log.add(row)
    paths = report.write_all(out, rows, settings, describe_experiment(session.experiment), effects,
                             stopping.sentence() if stopping else None)
    return TradeoffResult(rows, paths, settings, effects, stopping)


def check_spec(spec: StrategySpec, data, settings: dict) -> None:
    """Everything a strategy needs, checked in seconds before any training: names, options, amounts, and the
    scores file for `remove`."""
    try:
        options = options_from(spec.options)
        check_options(spec.names, options)
        for name in spec.names:
            if name == "remove":
                remove_arguments(spec, settings, data, check=True)
            elif name == "text-aug" and options.paraphrase_model:
                if not Path(options.paraphrase_model).is_dir():
                    raise UsageError(f"paraphrase model folder {options.paraphrase_model} does not exist")
            else:
                STRATEGIES[name].prepare(None, options)  # their option checks need no data
    except (UsageError, DataError) as error:
        raise type(error)(f"strategy {spec.label!r}: {error}") from None


def remove_arguments(spec: StrategySpec, settings: dict, data, check: bool = False) -> dict:
    """What `removal` takes for this spec: the ranking, one amount (default REMOVE_DEFAULT) and the scores."""
    given = {k: v for k, v in spec.options.items() if k in REMOVE_OPTIONS}
    if "decisions" in given:  # removal here cuts by the ranking within each run's training keys
        raise UsageError("remove:decisions is not applied by tradeoff; apply the decisions with "
                         "`python cli.py mitigate --strategy remove --decisions FILE` and run tradeoff on its output")
    amount = {k: given[k] for k in ("count", "frac", "threshold") if k in given} or dict(REMOVE_DEFAULT)
    arguments = {"by": given.get("by", Options.by), **amount,
                 "scores_path": Path(given.get("scores", settings["scores"]))}
    if check:
        check_amount(Options(**{k: v for k, v in arguments.items() if k != "scores_path"}))
        load_scores(arguments["scores_path"], data, RANKINGS[resolve_ranking(arguments["by"])].column)
        check_scores_fit(arguments["scores_path"], data, data_captions(open_dataset(data)))
    return arguments


def run_key(session: Session, spec: StrategySpec) -> str:
    """The settings hash a finished run is filed under; for removal it includes the scores file's content."""
    identity = dict(session.identity)
    if "remove" in spec.names:
        identity["scores_sha256"] = scores_sha256(remove_arguments(spec, session.settings, None)["scores_path"])
        identity["removal_order"] = REMOVAL_ORDER
    return settings_hash(identity)


@dataclass
class Prepared:
    """A strategy's training data: the table, the recipe's training settings, what it removes."""

    table: Table
    training: dict
    removed: list
    removed_injected: int
    captions: str


def run_tradeoff(session: Session, specs: list) -> list:
    """Train f and g per (strategy, seed) not yet in the log, measure them, file each row at once."""
    rows, seeds = [], session.settings["seeds"]
    for spec in specs:
        key = run_key(session, spec)
        todo = [seed for seed in range(seeds) if session.log.find(spec.label, seed, key) is None]
        prepared = prepare(session, spec) if todo else None
        for seed in range(seeds):
            if session.progress:
                state = "training" if seed in todo else "done before, kept"
                print(f"[tradeoff] {spec.label}, seed {seed + 1}/{seeds}: {state}", flush=True)
            if seed in todo:
                session.log.add(one_run(session, spec, seed, prepared, key))
            rows.append(session.log.find(spec.label, seed, key))
    return rows


def run_sequential(session: Session, specs: list, plan: SeedPlan, effects: dict) -> tuple:
    """Round after round, one more seed of the baseline and of each strategy whose outcomes are still open,
    within the seed cap and the time budget; returns the rows (with the matched baseline) and the Stopping."""
    by_label = {spec.label: spec for spec in specs}
    keys = {label: run_key(session, spec) for label, spec in by_label.items()}
    prepared, rows, seeds_run = {}, [], {label: 0 for label in by_label}
    started, reason = clock(), "max seeds"
    for seed in range(plan.max_seeds):
        labels = next_round(rows, list(by_label), seed, plan, effects)
        if not labels:
            reason = "settled"
            break
        todo = [label for label in labels if session.log.find(label, seed, keys[label]) is None]
        estimate = sum(expected_seconds(rows, label) for label in todo)
        if seed > 0 and not fits_budget(plan, clock() - started, estimate):
            reason = "budget"
            break
        if session.progress:
            print(f"[tradeoff] seed {seed + 1} (auto, at most {plan.max_seeds}): {', '.join(labels)}; "
                  f"about {estimate / 60:.0f} min, {(clock() - started) / 60:.0f} min spent", flush=True)
        for label in labels:
            if label in todo:
                if label not in prepared:
                    prepared[label] = prepare(session, by_label[label])
                session.log.add(one_run(session, by_label[label], seed, prepared[label], keys[label]))
            rows.append(session.log.find(label, seed, keys[label]))
            seeds_run[label] += 1
        rows = with_matched_baseline(rows, session.out)
    stopping = Stopping(reason, seeds_run, open_outcomes(rows, effects, plan.alpha), (clock() - started) / 60)
    return rows, stopping


def expected_seconds(rows: list, label: str) -> float:
    """What one more run of `label` should take: its own runs' mean, else every run's mean (0 with none yet)."""
    own = [r["seconds"] for r in rows if r["strategy"] == label and r.get("seconds") is not None]
    every = [r["seconds"] for r in rows if r.get("seconds") is not None]
    chosen = own or every
    return float(sum(chosen) / len(chosen)) if chosen else 0.0


def prepare(session: Session, spec: StrategySpec) -> Prepared:
    """Baseline trains on the data as it is; caption and training-time strategies on what `mitigate` writes;
    removal takes the top of the run's own training keys."""
    experiment, table, training = session.experiment, session.experiment.base, {}
    data_names = [n for n in spec.names if n != "remove"]
    if data_names:
        options = {k: v for k, v in spec.options.items() if k not in REMOVE_OPTIONS}
        result = mitigate(session.data, data_names, session.out / "data" / file_label(spec.label), overwrite=True,
                          progress=session.progress, **options)
        training = result.recipe.get("training", {})
        if result.counts.get("changed", 0):
            table = load_table(result.path, keys=experiment.training_keys, progress=session.progress)
    removed, injected = [], 0
    if "remove" in spec.names:
        arguments = remove_arguments(spec, session.settings, session.data)
        chosen = removal(experiment.training_keys, experiment.injected, arguments.pop("scores_path"), session.data,
                         **arguments)
        removed, injected = chosen.keys, chosen.injected
    return Prepared(table, training, removed, injected, describe_captions(spec, training, table, experiment))


def describe_captions(spec: StrategySpec, training: dict, table: Table, experiment: Experiment) -> str:
    """Which captions the runs trained on: 'primary only', 'primary + 4 EDA (4.9 per image)', ..."""
    if not training.get("caption_sampling"):
        return "primary only"
    rows = table.rows([k for k in experiment.training_keys if k in set(table.keys)]).tolist()
    per_image = sum(len(table.captions[r]) for r in rows) / max(len(rows), 1)
    parts = ["data's own (json list, title, description, keywords)" if "multi-caption" in spec.names else "primary"]
    if "text-aug" in spec.names:
        options = options_from(spec.options)
        parts.append(f"{options.n_aug} EDA" + (f" + {options.paraphrase_n} paraphrases" if options.paraphrase_model
                                                else ""))
    if len(parts) == 1 and parts[0] == "primary":
        parts = ["all captions in the data's json"]  # sampling inherited from an earlier mitigation's recipe
    return " + ".join(parts) + f"; {per_image:.1f} per image"


def one_run(session: Session, spec: StrategySpec, seed: int, prepared: Prepared, key: str) -> dict:
    settings, experiment, plan = session.settings, session.experiment, session.experiment.plan
    config = training_config(settings, seed)
    config = dataclasses.replace(config, **{k: v for k, v in prepared.training.items() if hasattr(config, k)})
    removed = set(prepared.removed)
    started = time.time()
    # Drawn over the model's full key list: a removal trains on the baseline's batches minus the removed pairs.
    trained = [train_clip(prepared.table, [k for k in m.train_keys if k not in removed], config,
                          order_keys=m.train_keys, progress=session.progress)
               for m in plan.models]
    trained_at = time.time()
    # A removed candidate is in neither model's data: f minus g means nothing for it.
    candidates = [k for k in plan.scored if k not in removed]
    clipmem = measure_clipmem(trained, dataclasses.replace(plan, scored=candidates), experiment, session.progress)
    for folder in ("clipmem", "configs"):
        (session.out / folder).mkdir(parents=True, exist_ok=True)
    write_parquet(clipmem_path(session.out, spec.label, seed, key), clipmem[["key", "clipmem_raw"]])
    measured_at = time.time()
    metrics = utility(trained[0].model, trained[0].tokenizer, experiment)
    row = {
        "strategy": spec.label, "seed": seed, "captions": prepared.captions,
        "removed": len(prepared.removed), "removed_injected": prepared.removed_injected,
        "candidates_scored": len(candidates), "candidates_total": len(plan.scored),
        "memorization": float(clipmem["clipmem_raw"].mean()) if candidates else None,
        "memorization_median": float(clipmem["clipmem_raw"].median()) if candidates else None,
        **{metric: metrics.get(metric) for metric in UTILITY},
        "eval_pairs": len(experiment.split.eval_keys), "train_pairs_f": len(trained[0].keys),
        "seconds": round(time.time() - started, 1), "settings": key,
        # where a run's time goes: training f and g, CLIPMem over the candidates, the utility metrics
        "train_seconds": round(trained_at - started, 1), "clipmem_seconds": round(measured_at - trained_at, 1),
        "utility_seconds": round(time.time() - measured_at, 1),
    }
    write_json(config_path(session.out, spec.label, seed, key),
               {"strategy": spec.label, "mitigation_options": spec.options, "training": config.to_dict(),
                "settings": settings, "removed_keys": prepared.removed, "result": row})
    return row


def measure_clipmem(trained: list, plan, experiment: Experiment, progress: bool) -> pd.DataFrame:
    if not plan.scored:
        return pd.DataFrame({"key": [], "clipmem_raw": []})
    measures = [memorization.measure_model(r.model, r.tokenizer, experiment.base, plan.scored, m.negative_keys, seed=0,
                                           progress=progress)
                for r, m in zip(trained, plan.models)]
    return memorization.combine_models(measures, plan)


def config_path(out: Path, label: str, seed: int, key: str) -> Path:
    """A run's settings, removed keys and result, named by its settings hash like its CLIPMem file."""
    return out / "configs" / f"{file_label(label)}_seed{seed}_{key}.json"


def clipmem_path(out: Path, label: str, seed: int, key: str) -> Path:
    """A run's per-candidate CLIPMem, named by its settings hash: a file of other settings is never read for it."""
    return out / "clipmem" / f"{file_label(label)}_seed{seed}_{key}.parquet"


def with_matched_baseline(rows: list, out: Path) -> list:
    """Add the same-seed baseline's mean CLIPMem over each run's own candidates (and how many), so a removal
    that leaves its most memorized candidates unscored is compared on the candidates it kept, not credited
    for dropping them; and over the candidates it removed, to show whether the removed pairs were memorized. A candidate the baseline did not score, or a file that disagrees with its row, is a
    DataError: the comparison is never made over whatever keys happen to overlap."""
    baselines = {r["seed"]: r for r in rows if r["strategy"] == BASELINE}
    matched = []
    for row in rows:
        value, count, removed = None, None, None
        if row["seed"] in baselines:
            own = read_clipmem(out, row)
            base = read_clipmem(out, baselines[row["seed"]]).set_index("key")["clipmem_raw"]
            missing = set(own["key"]) - set(base.index)
            if missing:
                raise DataError(f"{clipmem_path(out, BASELINE, row['seed'], baselines[row['seed']]['settings'])}: the "
                                f"baseline did not score {len(missing)} of the {len(own)} candidates of "
                                f"{row['strategy']!r}, seed {row['seed']} (e.g. {min(missing)}); rerun both in a "
                                "fresh --out")
            value, count = (float(base[own["key"]].mean()) if len(own) else None), len(own)
            gone = base.drop(own["key"])
            removed = float(gone.mean()) if len(gone) else None
        matched.append({**row, MATCHED_BASELINE: value, MATCHED_CANDIDATES: count, REMOVED_BASELINE: removed})
    return matched


def read_clipmem(out: Path, row: dict) -> pd.DataFrame:
    """A run's per-candidate CLIPMem file, checked against the number of candidates its row says it scored."""
    path = clipmem_path(out, row["strategy"], row["seed"], row["settings"])
    if not path.exists():
        raise DataError(f"{path}: missing, though tradeoff.csv lists this run; delete its row or rerun in a fresh --out")
    frame = pd.read_parquet(path)
    if len(frame) != int(row["candidates_scored"]):
        raise DataError(f"{path}: {len(frame)} candidates, but tradeoff.csv says the run scored "
                        f"{int(row['candidates_scored'])}; rerun in a fresh --out")
    return frame


def describe_experiment(experiment: Experiment) -> dict:
    """The sizes the report states: evaluation pairs, pairs left out, pool, candidates, downstream images."""
    return {"eval_pairs": len(experiment.split.eval_keys), "injected_left_out": experiment.split.injected_left_out,
            "pool": len(experiment.pool), "data": len(experiment.base), "candidates": len(experiment.plan.scored),
            "injected_in_pool": len(experiment.injected & set(experiment.pool)),
            "downstream": len(experiment.downstream) if experiment.downstream is not None else 0,
            "probe_folds": experiment.probe_folds}


def file_label(label: str) -> str:
    """A strategy label as a file name: remove:by=random -> remove_by-random."""
    return label.replace(":", "_").replace("=", "-")
