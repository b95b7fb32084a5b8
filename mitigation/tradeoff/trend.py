"""What the whole removal curve says about claim 5: per ranking, whether each utility metric moves with the
number of pairs removed (Spearman's rho over every point and seed, the count-0 point included, with a
permutation p-value), rather than reading one point against another.

Example:
    >>> rows = [{"ranking": "none", "removed": 0, "linear_probe_acc": 0.50}]
    >>> rows += [{"ranking": "clipmem", "removed": n, "linear_probe_acc": 0.50 + n / 1e4} for n in (100, 200, 400)]
    >>> found = trends(rows, ["linear_probe_acc"])[0]
    >>> found.ranking, round(found.rho, 2), found.points, found.p < 0.1
    ('clipmem', 1.0, 4, True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Up to this many orderings are enumerated (exact p); above it, this many are drawn at random.
PERMUTATIONS = 5040
NO_RANKING = "none"  # the count-0 point, shared by every ranking's line


@dataclass
class Trend:
    ranking: str
    metric: str
    rho: float
    p: float          # two-sided permutation p-value of rho
    points: int


def spearman_permutation(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple:
    """(Spearman's rho, two-sided permutation p): exact over every ordering of y when there are at most
    PERMUTATIONS of them, else from PERMUTATIONS random orderings (the observed one counted).

    >>> rho, p = spearman_permutation(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> rho, round(p, 3)
    (1.0, 0.083)
    """
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return 0.0, 1.0
    observed = float(np.corrcoef(rx, ry)[0, 1])
    if math.factorial(len(ry)) <= PERMUTATIONS:
        orderings = np.array(list(itertools.permutations(ry)))
        others = np.array([np.corrcoef(rx, o)[0, 1] for o in orderings])
        return observed, float(np.mean(np.abs(others) >= abs(observed) - 1e-12))
    rng = np.random.default_rng(seed)
    others = np.array([np.corrcoef(rx, rng.permutation(ry))[0, 1] for _ in range(PERMUTATIONS)])
    return observed, float((1 + np.sum(np.abs(others) >= abs(observed) - 1e-12)) / (1 + PERMUTATIONS))


def trends(rows: list, metrics: list) -> list:
    """A Trend per (ranking, metric) with at least three points measured (the count-0 point among them)."""
    frame = pd.DataFrame(rows)
    start = frame[frame["ranking"] == NO_RANKING]
    found = []
    for ranking in [r for r in dict.fromkeys(frame["ranking"]) if r != NO_RANKING]:
        line = pd.concat([start, frame[frame["ranking"] == ranking]])
        for metric in metrics:
            values = pd.to_numeric(line[metric], errors="coerce") if metric in line else pd.Series(dtype=float)
            kept = values.notna()
            if kept.sum() >= 3:
                rho, p = spearman_permutation(line.loc[kept, "removed"].to_numpy(float), values[kept].to_numpy(float))
                found.append(Trend(ranking, metric, rho, p, int(kept.sum())))
    return found


def trend_table(rows: list, metrics: list, names: dict) -> str:
    """Markdown: per ranking and metric, rho, its permutation p and the points it rests on."""
    lines = ["| ranking | metric | Spearman rho (utility against pairs removed) | permutation p | points |",
             "|---|---|---|---|---|"]
    for t in trends(rows, metrics):
        lines.append(f"| {t.ranking} | {names.get(t.metric, t.metric)} | {t.rho:+.2f} | {t.p:.3g} | {t.points} |")
    return "\n".join(lines)
