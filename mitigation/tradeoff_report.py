"""tradeoff.csv, tradeoff.md and tradeoff.png from the per-run rows of mitigation.tradeoff.

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

METRICS = ["memorization", "linear_probe_acc", "zeroshot_words_acc", "i2t_r1_caption", "i2t_r5_caption"]
PLOT_UTILITY = "linear_probe_acc"


def summarize(rows: list) -> pd.DataFrame:
    """Mean and std over seeds per strategy, in the order strategies first appear."""
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(frame["strategy"]))
    metrics = [m for m in METRICS if m in frame]
    grouped = frame.groupby("strategy", sort=False)[metrics]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    table["seeds"] = grouped.size()
    return table.loc[order]


def pareto_front(summary: pd.DataFrame, utility: str = PLOT_UTILITY) -> list:
    """Strategies no other strategy beats on both lower memorization and higher utility."""
    points = summary[["memorization_mean", f"{utility}_mean"]].to_numpy()
    front = []
    for i, (mem, util) in enumerate(points):
        dominated = any((m <= mem and u >= util) and (m < mem or u > util) for j, (m, u) in enumerate(points) if j != i)
        if not dominated:
            front.append(summary.index[i])
    return front


def _exceeds_noise(delta: float, std_a: float, std_b: float) -> str:
    if np.isnan(std_a) or np.isnan(std_b):
        return "n/a (1 seed)"
    return "yes" if abs(delta) > std_a + std_b else "no"


def markdown_table(rows: list) -> str:
    summary = summarize(rows)
    base = summary.loc["baseline"] if "baseline" in summary.index else None
    metrics = [m for m in METRICS if f"{m}_mean" in summary]
    header = "| strategy | seeds | " + " | ".join(metrics) + " | Δ memorization | Δ probe | beyond seed noise (mem / probe) |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, row in summary.iterrows():
        cells = [f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" if not np.isnan(row[f'{m}_std'])
                 else f"{row[f'{m}_mean']:.4f}" for m in metrics]
        if base is not None and name != "baseline":
            d_mem = row["memorization_mean"] - base["memorization_mean"]
            d_util = row[f"{PLOT_UTILITY}_mean"] - base[f"{PLOT_UTILITY}_mean"]
            noise = (f"{_exceeds_noise(d_mem, row['memorization_std'], base['memorization_std'])} / "
                     f"{_exceeds_noise(d_util, row[f'{PLOT_UTILITY}_std'], base[f'{PLOT_UTILITY}_std'])}")
            extra = [f"{d_mem:+.4f}", f"{d_util:+.4f}", noise]
        else:
            extra = ["", "", ""]
        lines.append(f"| {name} | {int(row['seeds'])} | " + " | ".join(cells + extra) + " |")
    front = pareto_front(summary)
    lines.append("")
    lines.append(f"Pareto front (lower memorization, higher {PLOT_UTILITY}): {', '.join(front)}")
    return "\n".join(lines)


def plot(rows: list, path: Path, utility: str = PLOT_UTILITY) -> Path:
    summary = summarize(rows)
    front = set(pareto_front(summary, utility))
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    for index, (name, row) in enumerate(summary.iterrows()):
        on_front = name in front
        axis.errorbar(row["memorization_mean"], row[f"{utility}_mean"],
                      xerr=np.nan_to_num(row["memorization_std"]), yerr=np.nan_to_num(row[f"{utility}_std"]),
                      fmt="o", markersize=8 if on_front else 6, capsize=3,
                      color="#d0452f" if on_front else "#4a7bd0")
        axis.annotate(name, (row["memorization_mean"], row[f"{utility}_mean"]), textcoords="offset points",
                      xytext=(6, 6 if index % 2 == 0 else -12), fontsize=8)  # alternate: close points stay legible
    ordered = summary.loc[sorted(front, key=lambda n: summary.loc[n, "memorization_mean"])]
    axis.plot(ordered["memorization_mean"], ordered[f"{utility}_mean"], "--", color="#d0452f", linewidth=1,
              label="Pareto front")
    axis.set_xlabel("memorization: mean CLIPMem (raw) on the candidate set  (lower is better)")
    axis.set_ylabel(f"utility: {utility} (higher is better)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    return path


def write_all(out: Path, rows: list, settings: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "tradeoff.csv", "markdown": out / "tradeoff.md", "plot": out / "tradeoff.png"}
    atomic_write(paths["csv"], lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    text = (f"# Utility against memorization\n\nSettings: {json.dumps(settings)}\n\n"
            f"{markdown_table(rows)}\n\n![trade-off](tradeoff.png)\n")
    write_text(paths["markdown"], text)
    plot(rows, paths["plot"])
    return paths
