"""Suspicion rankings (higher = more suspect) built from the per-key measurements, chosen by name.

Each ranking is one function of the scores table, in the manner of DataComp's apply_filter.py.

Example:
    >>> import pandas as pd
    >>> from curate.rankings import RANKINGS, minmax
    >>> table = pd.DataFrame({"clipmem_raw": [0.1, 0.5], "clipscore": [0.3, -0.2], "csl": [4.0, 9.0],
    ...                       "caption_repeats": [1, 1], "random": [0.2, 0.7]})
    >>> list(RANKINGS["combined"].order(table).round(2))
    [0.0, 1.0]
    >>> list(minmax(pd.Series([2.0, 4.0, 3.0])))
    [0.0, 1.0, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from dataio.errors import UsageError

DEFAULT_RANKING = "combined"


def minmax(values: pd.Series) -> pd.Series:
    """CLIPMem as the paper plots it: min-max normalized over the scored set, in [0, 1]."""
    low, high = values.min(), values.max()
    if not np.isfinite(low) or high == low:
        return pd.Series(np.zeros(len(values)), index=values.index)
    return (values - low) / (high - low)


def percentile(values: pd.Series) -> pd.Series:
    return values.rank(pct=True, method="average")


def rank_clipmem(table: pd.DataFrame) -> pd.Series:
    return table["clipmem_raw"]


def rank_clipscore(table: pd.DataFrame) -> pd.Series:
    """Low held-out alignment (or low pretrained-model cosine) is suspect."""
    return -table["clipscore"]


def rank_csl(table: pd.DataFrame) -> pd.Series:
    return table["csl"]


def rank_random(table: pd.DataFrame) -> pd.Series:
    return table["random"]


def rank_combined(table: pd.DataFrame) -> pd.Series:
    """Mean of the percentiles of low held-out alignment and high cumulative training loss.

    Measured on laion_subset (bench/flag.py, README): this pair beat each score alone and every other
    combination tried, among them adding CLIPMem and ranking within caption-frequency strata.
    """
    parts = [percentile(-table["clipscore"])]
    if "csl" in table and table["csl"].notna().all():
        parts.append(percentile(table["csl"]))
    return minmax(sum(parts) / len(parts))


@dataclass(frozen=True)
class Ranking:
    """A suspicion ranking by name, for `flag --method` and `mitigate --by` alike.

    order(table) -> Series, higher = more suspect. `column` is the scores.parquet column a user's threshold
    applies to, and `high_is_suspect` its direction (held-out alignment: LOW is suspect).
    """

    name: str
    order: Callable[[pd.DataFrame], pd.Series]
    column: str
    high_is_suspect: bool
    help: str


RANKINGS = {
    r.name: r
    for r in (
        Ranking("combined", rank_combined, "rank_combined", True,
                "mean percentile of low held-out alignment and high cumulative loss (default)"),
        Ranking("clipmem", rank_clipmem, "clipmem", True, "CLIPMem, f minus g alignment (normalized 0-1)"),
        Ranking("clipscore", rank_clipscore, "clipscore", False, "held-out alignment A_g, lowest first"),
        Ranking("csl", rank_csl, "csl", True, "cumulative sample loss of the training runs"),
        Ranking("random", rank_random, "random", True, "random order (a baseline)"),
    )
}
# Spellings kept from earlier versions: `mitigate --by default` meant the flagger's default ranking.
ALIASES = {"default": DEFAULT_RANKING}


def resolve_ranking(name: str) -> str:
    """The registry name for `name` (aliases resolved); UsageError naming the choices otherwise.

    >>> resolve_ranking("default"), resolve_ranking("csl")
    ('combined', 'csl')
    """
    name = ALIASES.get(name, name)
    if name not in RANKINGS:
        raise UsageError(f"unknown ranking {name!r}; choose one of {', '.join(RANKINGS)}")
    return name


def add_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """One `rank_<name>` column per ranking the table has the inputs for."""
    for name, ranking in RANKINGS.items():
        try:
            table[f"rank_{name}"] = ranking.order(table)
        except KeyError:
            continue
    return table
