"""Paired comparisons of each strategy with the baseline of the same seed, and what each one can tell.

Runs of one seed share initial weights and batch order, so a strategy is compared with the baseline of
its own seed: the mean of the per-seed differences, an interval from the t distribution over seeds and a
paired t-test. Each (strategy, metric) then ends as one of four outcomes, against a smallest effect that
matters (EFFECTS; memorization relative to the baseline's mean):

- no change: the whole interval lies inside +-that effect;
- gain / loss: otherwise, where the test rejects "no difference" after Holm's correction for the number
  of strategies compared (gain = the metric's good direction: lower memorization, higher utility);
- inconclusive: anything else, an underpowered null among them: never read as "no effect".

Each interval is at the level Holm's step-down tested its comparison at: 1 - ALPHA / (m - r) for the r-th
smallest p of m where the procedure rejected it, and the level of the step where it stopped for the rest.
So an interval excludes zero exactly where the outcome is gain or loss (a Bonferroni interval, 1 - ALPHA /
m for all, could cross zero beside a Holm rejection and contradict the outcome next to it). The minimum detectable effect says what the seeds used
could have found: the true paired difference a two-sided paired t-test at ALPHA finds with power POWER.

Example:
    >>> rows = [{"strategy": s, "seed": k, "memorization": m, "linear_probe_acc": p}
    ...         for s, ms, ps in (("baseline", (0.10, 0.12, 0.11), (0.50, 0.52, 0.51)),
    ...                           ("text-noise", (0.05, 0.06, 0.06), (0.501, 0.521, 0.511)))
    ...         for k, (m, p) in enumerate(zip(ms, ps))]
    >>> found = compare_all(rows)
    >>> found["text-noise", "memorization"].outcome, found["text-noise", "linear_probe_acc"].outcome
    ('gain', 'no change')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataio.errors import UsageError

BASELINE = "baseline"
ALPHA = 0.05
POWER = 0.8
# Retrieval is paired too: a strategy can leave the probes alone and still cost what CLIP users train for
# (measured here: text-embedding noise at sigma 0.15 cut image-to-text R@5 on laion_subset from 0.49 to 0.36).
PAIRED = ["memorization", "linear_probe_acc", "downstream_probe_acc", "zeroshot_words_acc", "i2t_r1_caption",
          "i2t_r5_caption"]
UTILITY_METRICS = PAIRED[1:]
# The smallest change that matters: one point of accuracy or recall (the paper's gains are 1-3 points);
# memorization as a fraction of the baseline's own mean (raw CLIPMem has no fixed scale across data).
EFFECTS = {"memorization": 0.10, "linear_probe_acc": 0.01, "downstream_probe_acc": 0.01, "zeroshot_words_acc": 0.01,
           "i2t_r1_caption": 0.01, "i2t_r5_caption": 0.01}
RELATIVE = {"memorization"}
GOOD_DIRECTION = {metric: -1 if metric == "memorization" else +1 for metric in PAIRED}
OUTCOMES = ("gain", "loss", "no change", "inconclusive")
# The baseline's mean CLIPMem over the same candidates a run scored (removal scores fewer), and how many.
MATCHED_BASELINE = "baseline_memorization_same_candidates"
MATCHED_CANDIDATES = "candidates_compared"
# The same baseline's mean CLIPMem over the candidates a removal took out: were the removed pairs memorized?
REMOVED_BASELINE = "baseline_memorization_removed_candidates"
PROSE = {
    "memorization": "memorization (mean CLIPMem on the candidates)",
    "linear_probe_acc": "linear-probe accuracy on the evaluation split",
    "downstream_probe_acc": "downstream linear-probe accuracy (images no run saw)",
    "zeroshot_words_acc": "zero-shot accuracy (caption-word prompts) on the evaluation split",
    "i2t_r1_caption": "image-to-text R@1 on the evaluation split",
    "i2t_r5_caption": "image-to-text R@5 on the evaluation split",
}


def resolve_effects(given: dict | None = None) -> dict:
    """EFFECTS with the user's values for some metrics; an unknown metric or a value <= 0 is a UsageError.

    >>> resolve_effects({"i2t_r5_caption": 0.02})["i2t_r5_caption"], resolve_effects()["memorization"]
    (0.02, 0.1)
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(EFFECTS))
    if unknown:
        raise UsageError(f"--min-effect: unknown metric {', '.join(unknown)}; choose from {', '.join(EFFECTS)}")
    for metric, value in given.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UsageError(f"--min-effect {metric}={value}: must be a number above 0")
    return {**EFFECTS, **{metric: float(value) for metric, value in given.items()}}


@dataclass
class Comparison:
    strategy: str
    metric: str
    n: int                   # seeds with both runs
    mean: float              # mean paired difference, strategy minus baseline
    sd: float | None         # standard deviation of the paired differences (None with one seed)
    low: float | None        # interval at the level Holm tested it at (None with one seed)
    high: float | None
    p: float | None          # paired t-test, uncorrected
    effect: float            # the smallest difference that matters, in the metric's own units
    p_holm: float | None = None
    outcome: str = "inconclusive"

    @property
    def loss_open(self) -> bool:
        """Whether a loss of at least `effect` is still possible: no interval, or one reaching that far."""
        if self.outcome == "loss" or self.low is None:
            return True
        bad_side = self.low if GOOD_DIRECTION[self.metric] > 0 else -self.high
        return bad_side <= -self.effect


def paired_differences(rows: list, strategy: str, metric: str) -> tuple:
    """(per-seed strategy minus baseline, the baseline values it was taken against); CLIPMem against the
    baseline's mean over the run's own candidates."""
    frame = pd.DataFrame(rows)
    if metric not in frame:
        return pd.Series(dtype=float), pd.Series(dtype=float)
    runs = frame[frame["strategy"] == strategy].set_index("seed")
    if metric == "memorization" and MATCHED_BASELINE in runs and runs[MATCHED_BASELINE].notna().any():
        against = runs[MATCHED_BASELINE]
    else:
        against = frame[frame["strategy"] == BASELINE].set_index("seed")[metric]
    against = pd.to_numeric(against, errors="coerce")
    diffs = (pd.to_numeric(runs[metric], errors="coerce") - against).dropna()
    return diffs, against.reindex(diffs.index)


def compare(rows: list, strategy: str, metric: str, effects: dict | None = None, compared: int = 1,
            alpha: float = ALPHA) -> Comparison | None:
    """The paired comparison of one strategy and metric, uncorrected, its interval at level 1 - alpha /
    compared (compare_all corrects, sets each interval to its Holm step and decides)."""
    from scipy import stats

    diffs, against = paired_differences(rows, strategy, metric)
    if len(diffs) == 0:
        return None
    effects = effects or EFFECTS
    effect = effects[metric] * abs(float(against.mean())) if metric in RELATIVE else effects[metric]
    values = diffs.to_numpy(dtype=float)
    n, mean = len(values), float(values.mean())
    if n < 2:
        return Comparison(strategy, metric, n, mean, None, None, None, None, effect)
    sd = float(values.std(ddof=1))
    if sd == 0:  # every seed moved by the same amount: the t statistic is infinite (or 0/0)
        return Comparison(strategy, metric, n, mean, sd, mean, mean, 0.0 if mean else 1.0, effect)
    p = float(stats.ttest_1samp(values, 0.0).pvalue)
    c = Comparison(strategy, metric, n, mean, sd, None, None, p, effect)
    return with_interval(c, alpha / compared)


def with_interval(c: Comparison, level_alpha: float) -> Comparison:
    """c with its t interval at level 1 - level_alpha (unchanged without a spread)."""
    from scipy import stats

    if not c.sd:
        return c
    half = float(stats.t.ppf(1 - level_alpha / 2, c.n - 1)) * c.sd / math.sqrt(c.n)
    c.low, c.high = c.mean - half, c.mean + half
    return c


def holm(p_values: list) -> list:
    """Holm's step-down adjusted p-values (same order as given; None stays None).

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted, running = list(p_values), 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_step_alphas(p_values: list, alpha: float = ALPHA) -> list:
    """Per p-value, the level Holm's step-down tests it at: alpha / (m - r) at its rank r among the m known
    p-values while every smaller one was rejected, else the level of the step where the procedure stopped
    (same order as given; None stays None).

    >>> [round(a, 4) for a in holm_step_alphas([0.001, 0.04, 0.03])]
    [0.0167, 0.025, 0.025]
    >>> [round(a, 4) for a in holm_step_alphas([0.001, 0.011, 0.02])]
    [0.0167, 0.025, 0.05]
    """
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    levels, stopped_at = list(p_values), None
    for rank, (p, i) in enumerate(known):
        step = alpha / (len(known) - rank)
        if stopped_at is None and p >= step:
            stopped_at = step
        levels[i] = stopped_at if stopped_at is not None else step
    return levels


def outcome(c: Comparison, alpha: float = ALPHA) -> str:
    """no change, gain, loss or inconclusive, in that order of precedence (see the module's docstring)."""
    if c.low is None:
        return "inconclusive"
    if -c.effect < c.low and c.high < c.effect:
        return "no change"
    if c.p_holm is not None and c.p_holm < alpha and c.mean != 0:
        return "gain" if np.sign(c.mean) == GOOD_DIRECTION[c.metric] else "loss"
    return "inconclusive"


def compare_all(rows: list, effects: dict | None = None, alpha: float = ALPHA) -> dict:
    """(strategy, metric) -> Comparison, Holm-corrected over the strategies per metric, each with its outcome.
    alpha: the test level, ALPHA for a fixed number of seeds, lower where seeds were added until the outcomes
    settled (mitigation.tradeoff.sequential)."""
    strategies = [s for s in dict.fromkeys(r["strategy"] for r in rows) if s != BASELINE]
    found = {}
    for metric in PAIRED:
        # compare's own interval is replaced below by the one at each comparison's Holm step
        per_metric = [c for c in (compare(rows, s, metric, effects, alpha=alpha) for s in strategies) if c]
        p_values = [c.p for c in per_metric]
        for c, adjusted, level in zip(per_metric, holm(p_values), holm_step_alphas(p_values, alpha)):
            c.p_holm = adjusted
            if level is not None:
                with_interval(c, level)
            c.outcome = outcome(c, alpha)
            found[c.strategy, metric] = c
    return found


def detectable_effect(sd: float | None, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The true mean paired difference a two-sided paired t-test at `alpha` over `n` seeds detects with
    probability `power`, where the differences have standard deviation `sd` (noncentral t, solved exactly).

    >>> round(detectable_effect(1.0, 3), 2), round(detectable_effect(1.0, 10), 2), detectable_effect(1.0, 1)
    (3.26, 1.0, None)
    """
    from scipy import optimize, stats

    if sd is None or n < 2 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    df, critical = n - 1, float(stats.t.ppf(1 - alpha / 2, n - 1))

    def shortfall(difference: float) -> float:
        shift = difference * math.sqrt(n) / sd
        # scipy's nct.cdf returns NaN far in the lower tail (df 2, shift 8 at alpha 0.012): that tail is ~0 there
        lower = float(np.nan_to_num(stats.nct.cdf(-critical, df, shift), nan=0.0))
        return stats.nct.sf(critical, df, shift) + lower - power

    upper = sd
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=sd * 1e-6))


def detectable_effects(comparisons: dict, alpha: float = ALPHA) -> dict:
    """metric -> (minimum detectable effect, seeds), from the pooled SD of the strategies' paired differences."""
    found = {}
    for metric in PAIRED:
        spreads = [(c.sd, c.n) for (_, m), c in comparisons.items() if m == metric and c.sd is not None]
        if spreads:
            sd = math.sqrt(sum(s * s for s, _ in spreads) / len(spreads))
            n = min(count for _, count in spreads)
            found[metric] = (detectable_effect(sd, n, alpha), n)
    return found
