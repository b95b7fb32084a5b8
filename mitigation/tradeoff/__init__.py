"""The trade-off: retrain under each strategy, measure memorization and utility, compare, and say what it means.

    tradeoff(data, strategies, ...) -> TradeoffResult      run.py: check, mitigate -> retrain -> measure per seed
    removal_curve(data, ...) -> CurveResult                curve.py: utility against the number removed

    experiment.py  the evaluation split, subsample, paper plan, removal, utility probes
    session.py     settings, what identifies a run; log.py  tradeoff.csv, appended per run, resume
    stats.py       paired comparisons, Holm, outcomes, detectable effects; verdict.py  the sentences
    report.py      tradeoff.md and tradeoff.png
"""

from mitigation.tradeoff.curve import CurveResult, removal_curve
from mitigation.tradeoff.run import DEFAULT_STRATEGIES, TradeoffResult, parse_strategy_list, tradeoff

__all__ = ["tradeoff", "TradeoffResult", "removal_curve", "CurveResult", "DEFAULT_STRATEGIES", "parse_strategy_list"]
