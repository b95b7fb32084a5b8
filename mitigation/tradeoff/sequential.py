"""`--seeds auto`: add seeds until every outcome is settled, the seed cap is reached or the budget runs out.

A round trains one more seed of the baseline and of every strategy with an outcome still inconclusive; a
strategy whose outcomes are all settled (gain, loss or no change on every metric it has) trains no more.
Looking at the data after every seed and stopping once a test passes would find more "effects" than the
level says. So every test and interval of a sequential trade-off runs at Pocock's nominal level for the
number of looks the cap allows (one look per seed from MIN_SEEDS to the cap), which keeps the chance of a
false outcome at ALPHA over all looks together: equally spaced looks, normal statistics (Pocock 1977;
Jennison and Turnbull 2000, table 2.1); with t statistics from few seeds the level is an approximation.

Example:
    >>> round(nominal_level(1), 4), round(nominal_level(8), 4)
    (0.05, 0.012)
    >>> looks(3, 10)
    8
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dataio.errors import UsageError
from mitigation.tradeoff.stats import ALPHA, BASELINE, compare_all

MIN_SEEDS = 3
MAX_SEEDS = 10
# Pocock's constant c_P(K) for K equally spaced looks at two-sided ALPHA = 0.05 (Jennison and Turnbull 2000,
# table 2.1); each look tests at the nominal level 2 * (1 - Phi(c_P)).
POCOCK_CONSTANTS = {1: 1.960, 2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413, 6: 2.453, 7: 2.485, 8: 2.512, 9: 2.535,
                    10: 2.555}
SETTLED = {"gain", "loss", "no change"}


def looks(min_seeds: int, max_seeds: int) -> int:
    """One look after each seed from min_seeds to max_seeds."""
    return max_seeds - min_seeds + 1


def nominal_level(count: int) -> float:
    """The per-look test level that keeps the overall level at ALPHA over `count` looks."""
    from scipy.stats import norm

    if count not in POCOCK_CONSTANTS:
        raise UsageError(f"--max-seeds allows {count} looks; at most {max(POCOCK_CONSTANTS)} are supported "
                         f"(lower --max-seeds)")
    return float(2 * norm.sf(POCOCK_CONSTANTS[count]))


@dataclass
class SeedPlan:
    """How many seeds: a fixed number, or (auto) from min_seeds up to max_seeds within budget_minutes."""

    fixed: int | None = 3
    min_seeds: int = MIN_SEEDS
    max_seeds: int = MAX_SEEDS
    budget_minutes: float | None = None

    @property
    def auto(self) -> bool:
        return self.fixed is None

    @property
    def alpha(self) -> float:
        return ALPHA if not self.auto else nominal_level(looks(self.min_seeds, self.max_seeds))

    def settings(self) -> dict:
        """What the report states (none of it decides a single run's result, so none of it is in the run key)."""
        if not self.auto:
            return {"seeds": self.fixed}
        return {"seeds": "auto", "min_seeds": self.min_seeds, "max_seeds": self.max_seeds,
                "budget_minutes": self.budget_minutes, "looks": looks(self.min_seeds, self.max_seeds),
                "alpha": round(self.alpha, 5)}


def seed_plan(seeds, max_seeds: int | None = None, budget_minutes: float | None = None) -> SeedPlan:
    """`seeds` is a whole number or "auto"; max_seeds and budget_minutes apply to auto only."""
    if isinstance(seeds, str) and seeds.strip().lower() == "auto":
        cap = MAX_SEEDS if max_seeds is None else max_seeds
        if cap < MIN_SEEDS:
            raise UsageError(f"--max-seeds must be at least {MIN_SEEDS} (the seeds every strategy gets first)")
        if budget_minutes is not None and not budget_minutes > 0:
            raise UsageError(f"--budget-minutes must be above 0, got {budget_minutes}")
        plan = SeedPlan(None, MIN_SEEDS, cap, budget_minutes)
        plan.alpha  # too many looks fails here, before any training
        return plan
    try:
        count = int(seeds)
    except (TypeError, ValueError):
        raise UsageError(f"--seeds must be a whole number or auto, got {seeds!r}") from None
    if max_seeds is not None or budget_minutes is not None:
        raise UsageError("--max-seeds and --budget-minutes go with --seeds auto")
    if count < 1:
        raise UsageError("--seeds and --epochs must be at least 1")
    return SeedPlan(count)


def open_outcomes(rows: list, effects: dict, alpha: float) -> dict:
    """strategy -> the metrics whose outcome is still inconclusive (strategies with none left out)."""
    found = {}
    for (strategy, metric), comparison in compare_all(rows, effects, alpha).items():
        if comparison.outcome not in SETTLED:
            found.setdefault(strategy, []).append(metric)
    return found


@dataclass
class Stopping:
    """Why a sequential trade-off stopped, how many seeds each strategy got, and what stayed inconclusive."""

    reason: str                                   # "settled", "max seeds" or "budget"
    seeds: dict = field(default_factory=dict)     # strategy -> seeds run
    still_open: dict = field(default_factory=dict)  # strategy -> metrics still inconclusive
    minutes: float = 0.0

    def sentence(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in self.seeds.items())
        why = {"settled": "every outcome was settled",
               "max seeds": "the seed cap was reached",
               "budget": "the next round would not have fitted the time budget"}[self.reason]
        opened = "; ".join(f"{s}: {', '.join(m)}" for s, m in self.still_open.items())
        return (f"Seeds added until the outcomes settled: stopped because {why}, after {self.minutes:.0f} minutes "
                f"of training and measuring (seeds per strategy: {counts}). "
                + (f"Still inconclusive: {opened}." if opened else "Nothing stayed inconclusive."))


def next_round(rows: list, labels: list, seed: int, plan: SeedPlan, effects: dict) -> list:
    """The labels to train at `seed`: all of them below min_seeds; then the baseline and every strategy with
    an open outcome (none when all are settled)."""
    if seed < plan.min_seeds:
        return list(labels)
    still_open = open_outcomes(rows, effects, plan.alpha)
    chosen = [label for label in labels if label != BASELINE and label in still_open]
    return ([BASELINE] + chosen) if chosen else []


def fits_budget(plan: SeedPlan, spent_seconds: float, estimate_seconds: float) -> bool:
    return plan.budget_minutes is None or spent_seconds + estimate_seconds <= plan.budget_minutes * 60
