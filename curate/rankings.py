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

# combined-neighbour with the hubness-corrected alignment: on the detection bench (bench/detection.py, 9 cells of
# five noise kinds, docs/detection_loko.md) true AUROC 0.840 against combined-neighbour's 0.834, higher in 7 cells
# and at most 0.004 lower in the other 2 (cross-category and within-category at 40 %); on laion_subset 0.947
# against 0.945. combined-neighbour (the default before) had beaten `combined` and every single score there.
DEFAULT_RANKING = "combined-csls"


# Alignments: the lower, the more suspect.
LOW_IS_SUSPECT = ("clipscore", "align_csls")


def minmax(values: pd.Series) -> pd.Series:
    """CLIPMem as the paper plots it: min-max normalized over the scored set, in [0, 1]."""
    low, high = values.min(), values.max()
    if values.isna().all():  # a score these pairs do not have (no model trained on them) stays missing, not 0
        return pd.Series(np.full(len(values), np.nan), index=values.index)
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
    combination tried, among them adding CLIPMem and ranking within caption-frequency strata. Without csl
    (a run that could not record it) it is the held-out alignment alone: `combined_inputs` says which.
    """
    return _mean_percentile(table, combined_inputs(table))


def rank_learned(table: pd.DataFrame) -> pd.Series:
    """The ranking `flag` learned from its canaries (curate.trust), cross-fitted; only a flag run writes it."""
    return table["rank_learned"]


def rank_neighbour(table: pd.DataFrame) -> pd.Series:
    """How far a pair sits from its held-out neighbourhood (curate.neighbours)."""
    return table["neighbour"]


def rank_combined_neighbour(table: pd.DataFrame) -> pd.Series:
    """The combined ranking with the neighbour score as a third input."""
    return _mean_percentile(table, combined_inputs(table) + (["neighbour"] if _complete(table, "neighbour") else []))


def rank_combined_csls(table: pd.DataFrame) -> pd.Series:
    """combined-neighbour with the held-out alignment corrected for hubness (`align_csls`, curate.neighbours):
    a caption that suits any image no longer passes for one that suits its own."""
    return _mean_percentile(table, csls_inputs(table))


def csls_inputs(table: pd.DataFrame) -> list:
    """combined-csls's inputs on this table: the corrected alignment (a table without it has no such ranking), a
    pretrained model's cosine where `flag --pretrained` gave one, and csl and the neighbour score where every row
    has them."""
    if "align_csls" not in table:
        raise KeyError("align_csls")
    return ["align_csls"] + (["clipscore"] if _is_pretrained_cosine(table) else []) + \
        [c for c in ("csl", "neighbour") if _complete(table, c)]


def _is_pretrained_cosine(table: pd.DataFrame) -> bool:
    """Whether `clipscore` is a pretrained model's cosine rather than a copy of the held-out alignment."""
    return _complete(table, "clipscore") and "align_g" in table and not clipscore_is_held_out_alignment(table)


def clipscore_is_held_out_alignment(table: pd.DataFrame) -> bool:
    """Whether `clipscore` merely copies the held-out alignment `align_g` (a run without `flag --pretrained`)."""
    return "align_g" in table and np.allclose(table["clipscore"], table["align_g"], equal_nan=True)


def combined_inputs(table: pd.DataFrame) -> list:
    """The score columns the combined ranking can use on this table: clipscore, and csl where every row has it."""
    return ["clipscore"] + (["csl"] if _complete(table, "csl") else [])


def _complete(table: pd.DataFrame, column: str) -> bool:
    return column in table and table[column].notna().all()


def _mean_percentile(table: pd.DataFrame, columns: list) -> pd.Series:
    """Each column's percentile, low alignment counting as suspect, averaged and scaled to [0, 1]."""
    parts = [percentile(-table[c] if c in LOW_IS_SUSPECT else table[c]) for c in columns]
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
                "mean percentile of low held-out alignment and high cumulative loss"),
        Ranking("clipmem", rank_clipmem, "clipmem", True, "CLIPMem, f minus g alignment (normalized 0-1)"),
        Ranking("clipscore", rank_clipscore, "clipscore", False, "held-out alignment A_g, lowest first"),
        Ranking("csl", rank_csl, "csl", True, "cumulative sample loss of the training runs"),
        Ranking("neighbour", rank_neighbour, "neighbour", True,
                "distance from the captions of the image's held-out neighbours and back (LEMoN-style)"),
        Ranking("combined-neighbour", rank_combined_neighbour, "rank_combined-neighbour", True,
                "combined plus the neighbour score"),
        Ranking("combined-csls", rank_combined_csls, "rank_combined-csls", True,
                "combined-neighbour with the held-out alignment corrected for hubness (CSLS); the default"),
        Ranking("learned", rank_learned, "rank_learned", True,
                "learned from the planted canaries over held-out alignment, training loss and neighbour terms "
                "(every score when learned from reviews), cross-fitted (flag with canaries)"),
        Ranking("random", rank_random, "random", True, "random order (a baseline)"),
    )
}
# Not a ranking but a choice among them, for `flag --method`: the one its canaries grade best.
AUTO = "auto"
# Spellings kept from earlier versions: `mitigate --by default` meant the flagger's default ranking.
ALIASES = {"default": DEFAULT_RANKING}


def resolve_ranking(name: str) -> str:
    """The registry name for `name` (aliases resolved); UsageError naming the choices otherwise.

    >>> resolve_ranking("default"), resolve_ranking("csl")
    ('combined-csls', 'csl')
    """
    name = ALIASES.get(name, name)
    if name not in RANKINGS:
        raise UsageError(f"unknown ranking {name!r}; choose one of {', '.join(RANKINGS)}")
    return name


def inputs_used(name: str, table: pd.DataFrame) -> str:
    """What a ranking actually rested on for this table, in words: a fallback is said, never silent.

    >>> inputs_used("combined", pd.DataFrame({"clipscore": [0.1, 0.2], "csl": [1.0, None]}))
    'combined of clipscore only (csl missing for 1 of 2 keys)'
    """
    if name not in ("combined", "combined-neighbour", "combined-csls"):
        return name
    if name == "combined-csls":
        wanted = ["align_csls"] + (["clipscore"] if _is_pretrained_cosine(table) else []) + ["csl", "neighbour"]
    else:
        wanted = ["clipscore", "csl"] + (["neighbour"] if name != "combined" else [])
    used = [c for c in wanted if _complete(table, c)]
    missing = [c for c in wanted if c not in used]
    if not missing:
        return f"{name} of {' + '.join(used)}"
    gaps = ", ".join(f"{c} missing for {int(table[c].isna().sum()) if c in table else len(table)} of {len(table)} keys"
                     for c in missing)
    return f"{name} of {' + '.join(used)} only ({gaps})"


def add_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """One `rank_<name>` column per ranking the table has the inputs for."""
    for name, ranking in RANKINGS.items():
        try:
            table[f"rank_{name}"] = ranking.order(table)
        except KeyError:
            continue
    return table
