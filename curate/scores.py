"""Suspicion rankings (higher = more suspect) built from the per-key measurements, chosen by name.

Each ranking is one function of the scores table, in the manner of DataComp's apply_filter.py.

Example:
    >>> import pandas as pd
    >>> from curate.scores import RANKINGS, minmax
    >>> table = pd.DataFrame({"clipmem_raw": [0.1, 0.5], "clipscore": [0.3, -0.2], "csl": [4.0, 9.0],
    ...                       "caption_repeats": [1, 1], "random": [0.2, 0.7]})
    >>> list(RANKINGS["combined"](table).round(2))
    [0.0, 1.0]
    >>> list(minmax(pd.Series([2.0, 4.0, 3.0])))
    [0.0, 1.0, 0.5]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


RANKINGS = {
    "combined": rank_combined,
    "clipmem": rank_clipmem,
    "clipscore": rank_clipscore,
    "csl": rank_csl,
    "random": rank_random,
}


def add_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """One `rank_<name>` column per ranking the table has the inputs for."""
    for name, ranking in RANKINGS.items():
        try:
            table[f"rank_{name}"] = ranking(table)
        except KeyError:
            continue
    return table
