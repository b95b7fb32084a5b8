"""tradeoff.md and tradeoff.png from the per-run rows of mitigation.tradeoff (tradeoff.csv is its run log).

Example:
    >>> rows = [{"strategy": "baseline", "seed": 0, "memorization": 0.10, "linear_probe_acc": 0.5},
    ...         {"strategy": "text-noise", "seed": 0, "memorization": 0.08, "linear_probe_acc": 0.6}]
    >>> pareto_front(summarize(rows))
    ['text-noise']
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataio.atomic import atomic_write, write_text  # noqa: E402
from mitigation.tradeoff import stats, verdict  # noqa: E402

METRICS = ["memorization", "memorization_change", stats.MATCHED_BASELINE, stats.REMOVED_BASELINE,
           "linear_probe_acc", "downstream_probe_acc", "zeroshot_words_acc", "i2t_r1_caption",
           "i2t_r5_caption"]
HEADERS = {"memorization": "memorization", "memorization_change": "Δ memorization (same candidates)",
           stats.MATCHED_BASELINE: "baseline memorization, kept candidates",
           stats.REMOVED_BASELINE: "baseline memorization, removed candidates",
           "linear_probe_acc": "linear probe", "downstream_probe_acc": "downstream probe",
           "zeroshot_words_acc": "zero-shot (caption words)", "i2t_r1_caption": "R@1", "i2t_r5_caption": "R@5"}
PLOT_UTILITY = "linear_probe_acc"


def summarize(rows: list) -> pd.DataFrame:
    """Mean and std over seeds per strategy, in the order strategies first appear."""
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["strategy"]))
    if stats.MATCHED_BASELINE in frame:
        frame["memorization_change"] = (pd.to_numeric(frame["memorization"], errors="coerce")
                                        - pd.to_numeric(frame[stats.MATCHED_BASELINE], errors="coerce"))
    metrics = [m for m in METRICS if m in frame]
    frame[metrics] = frame[metrics].apply(pd.to_numeric, errors="coerce")
    grouped = frame.groupby("strategy", sort=False)
    table = grouped[metrics].mean().add_suffix("_mean").join(grouped[metrics].std(ddof=1).add_suffix("_std"))
    table["seeds"] = grouped.size()
    for column in ("captions", "removed", "removed_injected", "candidates_scored", "candidates_total",
                   stats.MATCHED_CANDIDATES):
        if column in frame:
            table[column] = grouped[column].first()
    return table.loc[order]


def memorization_axis(summary: pd.DataFrame) -> str:
    """The memorization the plot and the Pareto front compare: the change against the same-seed baseline on
    each run's own candidates where the runs have a baseline (a removal's raw mean is over fewer candidates)."""
    matched = "memorization_change_mean"
    return matched if matched in summary and summary[matched].notna().all() else "memorization_mean"


def pareto_front(summary: pd.DataFrame, utility: str = PLOT_UTILITY) -> list:
    """Strategies no other strategy beats on both lower memorization and higher utility."""
    points = summary[[memorization_axis(summary), f"{utility}_mean"]].dropna()
    front = []
    for name, (mem, util) in points.iterrows():
        dominated = any((m <= mem and u >= util) and (m < mem or u > util)
                        for other, (m, u) in points.iterrows() if other != name)
        if not dominated:
            front.append(name)
    return front


def _mean_std(row, metric: str) -> str:
    mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:.4f}" if pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def runs_table(rows: list) -> str:
    """One line per strategy: its captions, what it removed, and each metric's mean ± std over seeds."""
    summary = summarize(rows)
    metrics = [m for m in METRICS if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any()]
    header = ("| strategy | captions | seeds | removed (injected) | candidates scored | "
              + " | ".join(HEADERS[m] for m in metrics) + " |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, row in summary.iterrows():
        removed = f"{int(row['removed'])} ({int(row['removed_injected'])})" if "removed" in row else "-"
        scored = (f"{int(row['candidates_scored'])} of {int(row['candidates_total'])}" if "candidates_scored" in row
                  else "-")
        cells = [name, str(row.get("captions", "")), str(int(row["seeds"])), removed, scored]
        lines.append("| " + " | ".join(cells + [_mean_std(row, m) for m in metrics]) + " |")
    return "\n".join(lines)


def _delta(c) -> str:
    if c is None:
        return "-"
    if c.low is None:
        return f"{c.mean:+.4f}"
    return f"{c.mean:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"


def paired_table(rows: list, effects: dict, alpha: float = stats.ALPHA) -> str:
    """Each strategy against the baseline of the same seed: Δ with its interval and the outcome per metric,
    then the smallest effect that matters and the smallest the seeds detect."""
    comparisons = stats.compare_all(rows, effects, alpha)
    metrics = [m for m in stats.PAIRED if any(k[1] == m for k in comparisons)]
    if not metrics:
        return "No paired comparison: the strategies need a `baseline` run of the same seeds."
    header = "| strategy | " + " | ".join(f"Δ {HEADERS[m]} [interval] | outcome" for m in metrics) + " |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for strategy in dict.fromkeys(s for s, _ in comparisons):
        cells = []
        for c in (comparisons.get((strategy, m)) for m in metrics):
            cells += [_delta(c), "" if c is None else c.outcome]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines.append("| smallest effect that matters | "
                 + " | ".join(f"±{verdict.effect_text(m, effects)} | " for m in metrics) + "|")
    detectable = stats.detectable_effects(comparisons, alpha)
    cells = [f"{detectable[m][0]:.4f} ({detectable[m][1]} seeds) | " if m in detectable else "n/a (1 seed) | "
             for m in metrics]
    lines.append("| minimum detectable effect (power 0.8) | " + " | ".join(cells) + "|")
    return "\n".join(lines)


def markdown(rows: list, settings: dict, sizes: dict, effects: dict | None = None, stopping: str | None = None) -> str:
    effects = stats.resolve_effects(effects)
    alpha = settings.get("alpha", stats.ALPHA)
    level = (f"{alpha:.4g}, Pocock's per-look level for {settings['looks']} looks: seeds were added until the "
             f"outcomes settled, and this keeps the overall level at {stats.ALPHA}" if "looks" in settings
             else f"{alpha}")
    summary = summarize(rows)
    downstream = (f"{sizes['downstream']} images no run trained on, {sizes['probe_folds']}-fold linear probe"
                  if sizes.get("downstream") else "not measured (no downstream images given)")
    return "\n".join([
        "# Utility against memorization",
        "",
        f"Data: {sizes['data']} pairs. Evaluation split: {sizes['eval_pairs']} clean pairs that no run trains on "
        f"({sizes['injected_left_out']} injected pairs on that side left out); the linear probe is cross-validated "
        f"over {sizes['probe_folds']} folds inside it. Downstream probe: {downstream}. Training pool: "
        f"{sizes['pool']} pairs ({sizes['injected_in_pool']} injected); memorization is the paper protocol's mean "
        f"raw CLIPMem over {sizes['candidates']} candidates (f on S_S+S_C, g on S_S+S_I); candidates a run removed "
        "are not scored (\"candidates scored: N of M\"), and its Δ memorization is taken against the baseline's "
        "mean over the same candidates.",
        "",
        f"Settings: {json.dumps(settings)}",
        "",
        *([stopping, ""] if stopping else []),
        "## Runs (mean ± std over seeds)",
        "",
        runs_table(rows),
        "",
        "## Against the baseline of the same seed",
        "",
        "Δ: strategy minus baseline, mean over seeds, with its interval (t distribution over seeds, at the level "
        "Holm's step-down tested it at: 1 - alpha / (strategies left at that step); alpha " + level + "). "
        "Outcome: no change where the interval lies inside ± the smallest effect that matters; gain or loss where the paired t-test, Holm-corrected for the number "
        "of strategies, rejects no difference at alpha; inconclusive otherwise (never read as "
        "no effect). Minimum detectable effect: the true difference these seeds find with power 0.8, from the "
        "spread of the paired differences.",
        "",
        paired_table(rows, effects, alpha),
        "",
        f"Pareto front (lower {HEADERS[memorization_axis(summary).removesuffix('_mean')]}, higher "
        f"{HEADERS[PLOT_UTILITY]}; the plot's axes): {', '.join(pareto_front(summary))}",
        "",
        "## Verdict",
        "",
        " ".join(verdict.verdict(rows, effects, alpha)),
        "",
        "![trade-off](tradeoff.png)",
        "",
    ])


def plot(rows: list, path: Path, utility: str = PLOT_UTILITY) -> Path:
    summary = summarize(rows)
    x = memorization_axis(summary)
    summary = summary.dropna(subset=[x, f"{utility}_mean"])
    front = set(pareto_front(summary, utility))
    figure, axis = plt.subplots(figsize=(8.6, 4.6))
    for number, (name, row) in enumerate(summary.iterrows(), start=1):
        on_front = name in front
        axis.errorbar(row[x], row[f"{utility}_mean"],
                      xerr=np.nan_to_num(row[x.replace("_mean", "_std")]), yerr=np.nan_to_num(row[f"{utility}_std"]),
                      fmt="o", markersize=8 if on_front else 6, capsize=3,
                      color="#d0452f" if on_front else "#4a7bd0", label=f"{number}  {name}")
        # a number beside the point and the name in the legend: long strategy names of close points overlap
        axis.annotate(str(number), (row[x], row[f"{utility}_mean"]), textcoords="offset points",
                      xytext=(5, 5), fontsize=9, fontweight="bold")
    ordered = summary.loc[sorted(front, key=lambda n: summary.loc[n, x])]
    axis.plot(ordered[x], ordered[f"{utility}_mean"], "--", color="#d0452f", linewidth=1,
              label="Pareto front")
    measured = ("Δ mean CLIPMem (raw) against the same-seed baseline, same candidates"
                if x == "memorization_change_mean" else "mean CLIPMem (raw) on the candidate set")
    axis.set_xlabel(f"memorization: {measured}  (lower is better)")
    axis.set_ylabel(f"utility: {HEADERS[utility]} on the evaluation split (higher is better)")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, handlelength=1)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(figure)
    return path


def write_all(out: Path, rows: list, settings: dict, sizes: dict, effects: dict | None = None,
              stopping: str | None = None) -> dict:
    """tradeoff.md and tradeoff.png beside the run log tradeoff.csv (which the runs wrote as they finished)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "tradeoff.csv", "markdown": out / "tradeoff.md", "plot": out / "tradeoff.png"}
    write_text(paths["markdown"], markdown(rows, settings, sizes, effects, stopping))
    plot(rows, paths["plot"])
    return paths
