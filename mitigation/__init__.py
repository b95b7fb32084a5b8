"""Mitigation strategies by name, written as datasets plus a training recipe, and the trade-off loop.

    mitigation.mitigate(data, strategies, ...) -> MitigationResult   (mitigation.strategies)
    mitigation.tradeoff(data, strategies, ...) -> TradeoffResult     (mitigation/tradeoff/run.py)
    mitigation.removal_curve(data, ...)                              (mitigation/tradeoff/curve.py)
"""

import dataio  # noqa: F401  (sets the OpenMP policy before torch loads)
from mitigation.strategies import MitigationResult, mitigate  # noqa: E402
from mitigation.tradeoff import TradeoffResult, removal_curve, tradeoff  # noqa: E402

__all__ = ["mitigate", "MitigationResult", "tradeoff", "TradeoffResult", "removal_curve"]
