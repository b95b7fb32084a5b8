"""The verdict of tradeoff.md in plain sentences, from the outcomes of mitigation.tradeoff.stats.

Per metric: which strategies gained, lost, changed nothing, or were inconclusive, and what the seeds could
have detected. A strategy is recommended only where it lowered memorization (a gain) and every utility
metric rules out a loss of the smallest effect that matters; otherwise the verdict names the loss it
could not rule out.

Example:
    >>> rows = [{"strategy": s, "seed": k, "memorization": m, "linear_probe_acc": p}
    ...         for s, ms, ps in (("baseline", (0.10, 0.12, 0.11), (0.50, 0.52, 0.51)),
    ...                           ("text-noise", (0.05, 0.06, 0.06), (0.47, 0.49, 0.48)))
    ...         for k, (m, p) in enumerate(zip(ms, ps))]
    >>> verdict(rows)[-1][:60]
    'Recommendation: none; text-noise lowered memorization but lo'
"""

from __future__ import annotations

from mitigation.tradeoff.stats import (
    ALPHA,
    BASELINE,
    OUTCOMES,
    PAIRED,
    PROSE,
    RELATIVE,
    UTILITY_METRICS,
    compare_all,
    detectable_effects,
    resolve_effects,
)


def describe(c) -> str:
    """'text-noise (-0.053, interval -0.070 to -0.036, Holm p = 0.004)'."""
    if c.low is None:
        return f"{c.strategy} ({c.mean:+.4f}, one seed)"
    return f"{c.strategy} ({c.mean:+.4f}, interval {c.low:+.4f} to {c.high:+.4f}, Holm p = {c.p_holm:.3g})"


def effect_text(metric: str, effects: dict) -> str:
    """'0.01' or '10 % of the baseline' : the smallest effect that matters, as the user set it."""
    return f"{effects[metric]:.0%} of the baseline" if metric in RELATIVE else f"{effects[metric]:g}"


def verdict(rows: list, effects: dict | None = None, alpha: float = ALPHA) -> list:
    """A few plain sentences: each metric's outcomes, the detectable effects, and what to do with this data."""
    if not any(r["strategy"] == BASELINE for r in rows):
        return ["There is no baseline among the strategies, so nothing is compared; add `baseline`."]
    effects = resolve_effects(effects)
    comparisons = compare_all(rows, effects, alpha)
    seeds = len({r["seed"] for r in rows if r["strategy"] == BASELINE})
    sentences = []
    if seeds < 2:
        sentences.append("With one seed there is no interval and no test: every outcome below is inconclusive; "
                         "rerun with --seeds 3 or more before acting on it.")
    for metric in PAIRED:
        found = [c for (_, m), c in comparisons.items() if m == metric]
        if found:
            sentences.append(_metric_sentence(metric, found, effects))
    detectable = detectable_effects(comparisons, alpha)
    if detectable:
        sentences.append(f"Smallest true effect these seeds detect with 80 % power (paired t, alpha {alpha:.3g}): "
                         + "; ".join(f"{PROSE[m]} {mde:.4f} ({n} seeds)" for m, (mde, n) in detectable.items())
                         + ". A smaller effect than that is reported as inconclusive, not as absent.")
    sentences.append(recommendation(comparisons, effects))
    return sentences


def _metric_sentence(metric: str, found: list, effects: dict) -> str:
    name = PROSE[metric][0].upper() + PROSE[metric][1:]
    parts = []
    for kind in OUTCOMES:
        chosen = [describe(c) for c in found if c.outcome == kind]
        if chosen:
            parts.append(f"{kind} for {'; '.join(chosen)}")
    return f"{name} (smallest effect that matters: {effect_text(metric, effects)}): " + "; ".join(parts) + "."


def recommendation(comparisons: dict, effects: dict) -> str:
    """The strategy that lowered memorization most among those that rule out every utility loss; else why none."""
    strategies = list(dict.fromkeys(s for s, _ in comparisons))
    lowers = [s for s in strategies if getattr(comparisons.get((s, "memorization")), "outcome", None) == "gain"]
    open_losses = {s: [m for m in UTILITY_METRICS if (s, m) in comparisons and comparisons[s, m].loss_open]
                   for s in strategies}
    safe = [s for s in lowers if not open_losses[s]]
    if safe:
        best = min(safe, key=lambda s: comparisons[s, "memorization"].mean)
        gains = [PROSE[m] for m in UTILITY_METRICS if getattr(comparisons.get((best, m)), "outcome", None) == "gain"]
        extra = f", and it raised {' and '.join(gains)}" if gains else ""
        return (f"Recommendation for this data: {best}; of the strategies that lowered memorization and rule out a "
                f"utility loss of the smallest effect that matters, it lowered it most "
                f"({comparisons[best, 'memorization'].mean:+.4f}){extra}.")
    if lowers:
        notes = "; ".join(f"{s} lowered memorization but " + _open_text(s, open_losses[s], comparisons, effects)
                          for s in lowers)
        return f"Recommendation: none; {notes}."
    return ("Recommendation: none; no strategy lowered memorization by the smallest effect that matters with a "
            "clear test at these settings: keep the data as it is, or rerun with more seeds, more data or more "
            "epochs before choosing one.")


def _open_text(strategy: str, metrics: list, comparisons: dict, effects: dict) -> str:
    """'lost linear-probe accuracy (-0.03 ...)' or 'could not rule out a loss of 0.01 in R@5 (...)'."""
    parts = []
    for metric in metrics:
        c = comparisons[strategy, metric]
        verb = "lost" if c.outcome == "loss" else f"could not rule out a loss of {effect_text(metric, effects)} in"
        parts.append(f"{verb} {PROSE[metric]} ({describe(c).split(' (', 1)[1]}")
    return ", and ".join(parts)
