"""Paired comparisons of each strategy with the baseline of the same seed, the seed noise floor, and the
verdict sentences of tradeoff.md.

Runs of one seed share initial weights and batch order, so a strategy is compared with the baseline of
its own seed: the mean of the per-seed differences, a 95 % interval from the t distribution over seeds,
and a paired t-test. The noise floor is how far the baseline moves against itself across seeds (the root
mean square of its seed-to-seed differences): a change is called beyond noise when the test says
p < 0.05 and it is larger than that floor.

Example:
    >>> rows = [{"strategy": s, "seed": k, "memorization": m, "linear_probe_acc": 0.5}
    ...         for s, ms in (("baseline", (0.10, 0.12, 0.11)), ("text-noise", (0.05, 0.06, 0.06)))
    ...         for k, m in enumerate(ms)]
    >>> c = compare(rows, "text-noise", "memorization")
    >>> round(c.mean, 3), c.beyond_noise, cell(compare(rows, "text-noise", "linear_probe_acc"))
    (-0.053, True, 'no')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

BASELINE = "baseline"
ALPHA = 0.05
# Retrieval is paired too: a strategy can leave the probes alone and still cost what CLIP users train for
# (measured here: text-embedding noise at sigma 0.15 cut image-to-text R@5 on laion_subset from 0.49 to 0.36).
PAIRED = ["memorization", "linear_probe_acc", "downstream_probe_acc", "i2t_r1_caption", "i2t_r5_caption"]
# The baseline's mean CLIPMem over the same candidates a run scored (removal scores fewer).
MATCHED_BASELINE = "baseline_memorization_same_candidates"
PROSE = {
    "memorization": "memorization (mean CLIPMem on the candidates)",
    "linear_probe_acc": "linear-probe accuracy on the evaluation split",
    "downstream_probe_acc": "downstream linear-probe accuracy (images no run saw)",
    "i2t_r1_caption": "image-to-text R@1 on the evaluation split",
    "i2t_r5_caption": "image-to-text R@5 on the evaluation split",
}


@dataclass
class Comparison:
    strategy: str
    metric: str
    n: int                   # seeds with both runs
    mean: float              # mean paired difference, strategy minus baseline
    low: float | None        # 95 % interval (None with one seed)
    high: float | None
    p: float | None          # paired t-test
    noise_floor: float | None

    @property
    def significant(self) -> bool | None:
        return None if self.p is None else self.p < ALPHA

    @property
    def beyond_noise(self) -> bool | None:
        if self.p is None:
            return None
        return self.significant and (self.noise_floor is None or abs(self.mean) > self.noise_floor)


def cell(comparison: Comparison | None) -> str:
    """yes / no / n/a (1 seed): the table's beyond-noise column."""
    if comparison is None:
        return ""
    if comparison.beyond_noise is None:
        return "n/a (1 seed)"
    return "yes" if comparison.beyond_noise else "no"


def paired_differences(rows: list, strategy: str, metric: str) -> pd.Series:
    """Per seed: the strategy's value minus the baseline's of the same seed (matched candidates for CLIPMem)."""
    frame = pd.DataFrame(rows)
    if metric not in frame:
        return pd.Series(dtype=float)
    runs = frame[frame["strategy"] == strategy].set_index("seed")
    if metric == "memorization" and MATCHED_BASELINE in runs and runs[MATCHED_BASELINE].notna().any():
        against = runs[MATCHED_BASELINE]
    else:
        against = frame[frame["strategy"] == BASELINE].set_index("seed")[metric]
    return (pd.to_numeric(runs[metric], errors="coerce") - pd.to_numeric(against, errors="coerce")).dropna()


def noise_floor(rows: list, metric: str) -> float | None:
    """Root mean square of the baseline's differences between seeds; None with fewer than 2 seeds."""
    frame = pd.DataFrame(rows)
    if metric not in frame:
        return None
    values = pd.to_numeric(frame.loc[frame["strategy"] == BASELINE, metric], errors="coerce").dropna().to_numpy()
    if len(values) < 2:
        return None
    diffs = [a - b for i, a in enumerate(values) for b in values[i + 1:]]
    return float(np.sqrt(np.mean(np.square(diffs))))


def compare(rows: list, strategy: str, metric: str) -> Comparison | None:
    from scipy import stats

    diffs = paired_differences(rows, strategy, metric).to_numpy(dtype=float)
    if len(diffs) == 0:
        return None
    n, mean = len(diffs), float(diffs.mean())
    floor = noise_floor(rows, metric)
    if n < 2:
        return Comparison(strategy, metric, n, mean, None, None, None, floor)
    spread = float(diffs.std(ddof=1))
    if spread == 0:  # every seed moved by the same amount: the t statistic is infinite (or 0/0)
        return Comparison(strategy, metric, n, mean, mean, mean, 0.0 if mean else 1.0, floor)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * spread / math.sqrt(n)
    p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return Comparison(strategy, metric, n, mean, mean - half, mean + half, p, floor)


def compare_all(rows: list) -> dict:
    """(strategy, metric) -> Comparison for every non-baseline strategy and each paired metric it has."""
    strategies = [s for s in dict.fromkeys(r["strategy"] for r in rows) if s != BASELINE]
    found = {}
    for strategy in strategies:
        for metric in PAIRED:
            comparison = compare(rows, strategy, metric)
            if comparison is not None:
                found[strategy, metric] = comparison
    return found


def describe(c: Comparison) -> str:
    """'text-noise (-0.053, 95 % interval -0.070 to -0.036, p = 0.004)'."""
    if c.p is None:
        return f"{c.strategy} ({c.mean:+.4f}, one seed)"
    return f"{c.strategy} ({c.mean:+.4f}, 95 % interval {c.low:+.4f} to {c.high:+.4f}, p = {c.p:.3g})"


def verdict(rows: list) -> list:
    """A few plain sentences: what lowered memorization, what changed utility, beyond noise or not, and
    what to do with this data."""
    if not any(r["strategy"] == BASELINE for r in rows):
        return ["There is no baseline among the strategies, so nothing is compared; add `baseline`."]
    comparisons = compare_all(rows)
    seeds = len({r["seed"] for r in rows if r["strategy"] == BASELINE})
    sentences = []
    if seeds < 2:
        sentences.append("With one seed there is no paired test and no noise floor: every difference below is "
                         "a single run's; rerun with --seeds 3 or more before acting on it.")
    for metric in PAIRED:
        found = [c for (s, m), c in comparisons.items() if m == metric]
        if found:
            sentences.append(_metric_sentence(metric, found))
    sentences.append(_recommendation(comparisons, seeds))
    return sentences


def _metric_sentence(metric: str, found: list) -> str:
    name = PROSE[metric][0].upper() + PROSE[metric][1:]
    if all(c.p is None for c in found):
        return f"{name}: " + ", ".join(f"{c.strategy} {c.mean:+.4f}" for c in found) + " (single runs, no test)."
    lowered = [describe(c) for c in found if c.beyond_noise and c.mean < 0]
    raised = [describe(c) for c in found if c.beyond_noise and c.mean > 0]
    within = [f"{c.strategy} ({c.mean:+.4f})" for c in found if not c.beyond_noise]
    parts = ([f"lowered beyond noise by {'; '.join(lowered)}"] if lowered else []) + \
            ([f"raised beyond noise by {'; '.join(raised)}"] if raised else []) + \
            ([f"within noise for {', '.join(within)}"] if within else [])
    return f"{name}: " + "; ".join(parts) + "."


def _recommendation(comparisons: dict, seeds: int) -> str:
    def beyond(strategy, metric, sign):
        c = comparisons.get((strategy, metric))
        return c is not None and bool(c.beyond_noise) and np.sign(c.mean) == sign

    strategies = list(dict.fromkeys(s for s, _ in comparisons))
    lowers = [s for s in strategies if beyond(s, "memorization", -1)]
    costs = {s: [m for m in PAIRED[1:] if beyond(s, m, -1)] for s in strategies}
    free = [s for s in lowers if not costs[s]]
    if seeds < 2:
        return "Recommendation: none yet; one seed cannot separate a strategy's effect from seed noise."
    if free:
        best = min(free, key=lambda s: comparisons[s, "memorization"].mean)
        gains = [PROSE[m] for m in PAIRED[1:] if beyond(best, m, +1)]
        extra = f", and it raised {' and '.join(gains)}" if gains else ""
        return (f"Recommendation for this data: {best}; of the strategies that lowered memorization beyond noise "
                f"without a utility loss beyond noise, it lowered it most "
                f"({comparisons[best, 'memorization'].mean:+.4f}){extra}.")
    if lowers:
        best = min(lowers, key=lambda s: comparisons[s, "memorization"].mean)
        lost = ", ".join(f"{PROSE[m]} {comparisons[best, m].mean:+.4f}" for m in costs[best])
        return (f"Recommendation: no strategy lowered memorization for free here; {best} lowered it most but cost "
                f"{lost}: use it only where memorization matters more than that loss.")
    return ("Recommendation: no strategy moved memorization beyond seed noise at these settings; keep the data as "
            "it is, or rerun with more seeds, more data or more epochs before choosing one.")
