"""Mitigation strategies by name, written as datasets plus a training recipe, and the trade-off loop.

    mitigation.mitigate(data, strategies, ...) -> MitigationResult   (mitigation.strategies)
    mitigation.tradeoff(data, strategies, ...) -> TradeoffResult     (mitigation.tradeoff)
    mitigation.removal_curve(data, ...)                              (mitigation.removal_curve)
"""

import dataio  # noqa: F401  (sets the OpenMP policy before torch loads)
from mitigation.removal_curve import removal_curve  # noqa: E402
from mitigation.strategies import MitigationResult, mitigate  # noqa: E402
from mitigation.tradeoff import TradeoffResult, tradeoff  # noqa: E402

__all__ = ["mitigate", "MitigationResult", "tradeoff", "TradeoffResult", "removal_curve"]
