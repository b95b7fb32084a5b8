"""Where outputs go by default: beside the input folder, named after it.

    laion_subset  ->  laion_subset.clipmem/           flag (scores.parquet, report.html, models/)
                      laion_subset.remove+text-aug/   mitigate
                      laion_subset.tradeoff/          tradeoff

Example:
    >>> str(sibling("data/laion_subset/", ".clipmem"))
    'data/laion_subset.clipmem'
    >>> str(scores_path("data/laion_subset"))
    'data/laion_subset.clipmem/scores.parquet'
"""

from __future__ import annotations

from pathlib import Path

FLAG_SUFFIX = ".clipmem"
TRADEOFF_SUFFIX = ".tradeoff"
SCORES_NAME = "scores.parquet"


def sibling(data, suffix: str) -> Path:
    """DATA + suffix next to DATA; `.` and `..` are resolved first so the name is the folder's own."""
    data = Path(data)
    if data.name in ("", ".", ".."):
        data = data.resolve()
    return data.with_name(data.name + suffix)


def flag_folder(data) -> Path:
    return sibling(data, FLAG_SUFFIX)


def scores_path(data) -> Path:
    """Where `flag` writes the scores table of DATA, and where `remove` looks for it."""
    return flag_folder(data) / SCORES_NAME


def tradeoff_folder(data) -> Path:
    return sibling(data, TRADEOFF_SUFFIX)


def mitigated_folder(data, strategy_names: list) -> Path:
    """`laion_subset` with remove and text-aug -> `laion_subset.remove+text-aug`."""
    return sibling(data, "." + "+".join(strategy_names))
