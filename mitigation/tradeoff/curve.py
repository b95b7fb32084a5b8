"""The removal curve (the paper's Fig. 6 as a tool): utility against how many of the most suspect training
pairs are removed, one line per ranking.

    python cli.py tradeoff --data laion_subset --curve
    python cli.py tradeoff --data laion_subset --curve --curve-counts 0,100,400 --curve-rankings combined,random

Every point trains ONE model (utility only, no memorization) on the training pool minus the top N of
that pool by the ranking, all rankings read from one flag run's scores.parquet. Count 0 is the same model
for every ranking and is trained once. Utility is measured as in the trade-off: the fixed clean
evaluation split and the downstream images (mitigation.tradeoff.experiment). Each finished point is added to
removal_curve.csv at once; a rerun with the same settings skips it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from curate.rankings import DEFAULT_RANKING, RANKINGS, resolve_ranking  # noqa: E402
from dataio.atomic import atomic_write, write_text  # noqa: E402
from dataio.errors import UsageError  # noqa: E402
from dataio.keyed import data_captions  # noqa: E402
from dataio.paths import tradeoff_folder  # noqa: E402
from dataio.reader import open_dataset  # noqa: E402
from mitigation.remove import check_scores_fit, load_scores  # noqa: E402
from mitigation.tradeoff.log import settings_hash  # noqa: E402
from mitigation.tradeoff.session import (  # noqa: E402
    REMOVAL_ORDER,
    Session,
    resolve_settings,
    scores_sha256,
    start_session,
    training_config,
)
from mitigation.tradeoff.experiment import EVAL_FRAC, EVAL_MAX, PROBE_FOLDS, UTILITY, removal, utility  # noqa: E402
from mitigation.tradeoff.trend import NO_RANKING, trend_table  # noqa: E402
from train.loop import train_clip  # noqa: E402

DEFAULT_COUNTS = (0, 50, 100, 200, 400, 800, 1600)
DEFAULT_RANKINGS = (DEFAULT_RANKING, "clipmem", "clipscore", "random")
# Panels of removal_curve.png: metric -> axis label.
PLOT_UTILITY = {"linear_probe_acc": "linear probe, evaluation split", "downstream_probe_acc": "downstream probe",
                "i2t_r5_caption": "image-to-text R@5, evaluation split"}


@dataclass
class CurveResult:
    rows: list
    paths: dict
    settings: dict
    left_out: list  # counts that would leave fewer than two batches of training pairs


def removal_curve(data, out=None, *, counts=DEFAULT_COUNTS, rankings=DEFAULT_RANKINGS, seeds: int = 1,
                  epochs: int = 10, samples: int | None = None, quick: bool = False, model: str = "clipmem-tiny",
                  batch_size: int = 128, lr: float = 5e-4, eval_max: int = EVAL_MAX, eval_frac: float = EVAL_FRAC,
                  probe_folds: int = PROBE_FOLDS, scores=None, downstream=None, progress: bool = True) -> CurveResult:
    """Train one model per (ranking, count) on the training pool minus its top `count`; write
    removal_curve.csv and removal_curve.png in OUT (default DATA.tradeoff).

    Counts that would leave fewer than two batches of training pairs are left out (and said so).
    """
    settings = resolve_settings(data, seeds, epochs, samples, quick, model, batch_size, lr, eval_max, eval_frac,
                                probe_folds, scores)
    rankings = [resolve_ranking(name) for name in dict.fromkeys(rankings)]
    counts = sorted({int(c) for c in counts})
    if not rankings or not counts or counts[0] < 0:
        raise UsageError(f"the curve needs at least one ranking and counts of 0 or more (got {rankings}, {counts})")
    for name in rankings:  # a missing scores file or column costs seconds, not a night of training
        load_scores(settings["scores"], data, RANKINGS[name].column)
    check_scores_fit(Path(settings["scores"]), data, data_captions(open_dataset(data)))
    out = Path(out) if out else tradeoff_folder(data)
    session = start_session(data, settings, downstream, out, "removal_curve.csv", "point", progress)
    kept = [c for c in counts if len(session.experiment.pool) - c >= 2 * batch_size]
    if not kept:
        raise UsageError(f"every count leaves fewer than {2 * batch_size} of the {len(session.experiment.pool)} "
                         "training pairs; give smaller --curve-counts")
    rows = run_curve(session, rankings, kept)
    write_text(out / "removal_curve.md", curve_markdown(rows))
    paths = {"csv": out / "removal_curve.csv", "plot": plot_curve(rows, out / "removal_curve.png"),
             "markdown": out / "removal_curve.md"}
    return CurveResult(rows, paths, settings, [c for c in counts if c not in kept])


def measured_metrics(frame: pd.DataFrame) -> list:
    """The utility metrics of PLOT_UTILITY that at least one point measured (the downstream probe is optional)."""
    return [m for m in PLOT_UTILITY if m in frame and pd.to_numeric(frame[m], errors="coerce").notna().any()]


def curve_table(rows: list) -> str:
    """Mean utility per point (over seeds), each ranking's best point marked with *."""
    frame = pd.DataFrame(rows)
    metrics = measured_metrics(frame)
    frame[metrics] = frame[metrics].apply(pd.to_numeric, errors="coerce")
    means = frame.groupby(["ranking", "removed"], sort=False)[metrics + ["removed_injected"]].mean().reset_index()
    best = means.loc[means.groupby("ranking")[metrics[0]].idxmax(), ["ranking", "removed"]]
    marked = set(map(tuple, best.to_numpy().tolist()))
    lines = ["| ranking | removed | of them injected | " + " | ".join(PLOT_UTILITY[m] for m in metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for row in means.itertuples(index=False):
        star = " *" if (row.ranking, row.removed) in marked else ""
        values = " | ".join(f"{getattr(row, m):.4f}" for m in metrics)
        lines.append(f"| {row.ranking} | {int(row.removed)}{star} | {int(row.removed_injected)} | {values} |")
    return "\n".join(lines)


def curve_markdown(rows: list) -> str:
    """removal_curve.md: the mean utility per point, then each line's trend over all its points."""
    metrics = measured_metrics(pd.DataFrame(rows))
    return "\n".join([
        "# Removal curve", "", "Mean utility per point over seeds (* each ranking's best point on the first metric):",
        "", curve_table(rows), "",
        "Trend per ranking: Spearman's rho of each utility metric against the number of pairs removed, over every "
        "point and seed of the line (the count-0 point included), with a permutation p-value. A best point alone "
        "is not evidence of a peak; a trend with a small p is.", "",
        trend_table(rows, metrics, PLOT_UTILITY), ""])


def run_curve(session: Session, rankings: list, counts: list) -> list:
    """One model per point not yet in the log; each row filed as soon as its model is measured."""
    key = settings_hash({**session.identity, "scores_sha256": scores_sha256(session.settings["scores"]),
                         "removal_order": REMOVAL_ORDER})
    points = [(NO_RANKING, 0)] if 0 in counts else []
    points += [(name, count) for name in rankings for count in counts if count > 0]
    rows = []
    for ranking, count in points:
        label = f"{ranking}:{count}"
        for seed in range(session.settings["seeds"]):
            if session.log.find(label, seed, key) is None:
                if session.progress:
                    print(f"[curve] {ranking}, {count} removed, seed {seed + 1}", flush=True)
                session.log.add({**curve_point(session, ranking, count, seed), "point": label, "settings": key})
            rows.append(session.log.find(label, seed, key))
    return rows


def curve_point(session: Session, ranking: str, count: int, seed: int) -> dict:
    experiment, settings = session.experiment, session.settings
    removed, injected = [], 0
    if count:
        chosen = removal(experiment.pool, experiment.injected, settings["scores"], session.data, ranking, count=count)
        removed, injected = chosen.keys, chosen.injected
    gone = set(removed)
    keys = [k for k in experiment.pool if k not in gone]
    config = training_config(settings, seed)
    started = time.time()
    # Every point sees the count-0 model's batches minus its removed pairs: the curve differs only in those.
    trained = train_clip(experiment.base, keys, config, order_keys=experiment.pool, progress=session.progress)
    metrics = utility(trained.model, trained.tokenizer, experiment)
    return {"ranking": ranking, "seed": seed, "removed": len(removed), "removed_injected": injected,
            "removed_injected_share": injected / len(removed) if removed else None, "train_pairs": len(keys),
            **{metric: metrics.get(metric) for metric in UTILITY}, "seconds": round(time.time() - started, 1)}


def plot_curve(rows: list, path: Path) -> Path:
    """Utility against the number removed, one panel per utility metric measured, one line per ranking (each
    starting at the count-0 point), the best point of each line marked."""
    frame = pd.DataFrame(rows)
    metrics = measured_metrics(frame)
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
        means = frame.groupby(["ranking", "removed"], sort=False)[metric].mean().reset_index()
        start = means[means["ranking"] == NO_RANKING]
        for name in [r for r in dict.fromkeys(means["ranking"]) if r != NO_RANKING]:
            line = pd.concat([start, means[means["ranking"] == name]]).sort_values("removed")
            drawn = axis.plot(line["removed"], line[metric], "o-", label=name, markersize=4)[0]
            best = line.loc[line[metric].idxmax()]
            axis.plot(best["removed"], best[metric], "*", markersize=14, color=drawn.get_color())
        axis.set_xscale("symlog", linthresh=50)
        axis.set_xlabel("training pairs removed (most suspect first)")
        axis.set_ylabel(PLOT_UTILITY[metric])
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.suptitle("removal curve (star: each ranking's best point)", fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(figure)
    return path
