"""A reviewer's decisions (report.html's decisions.csv) as the `remove` strategy applies them.

Pairs reviewed *wrong caption* are removed; pairs reviewed *fine* are never removed by a ranking; *unsure*
leaves a pair to the ranking, as if undecided. The file is checked against the data before anything is
written: every key must be one of the data's, and the caption the reviewer saw must be the data's.

Example:
    >>> from dataio.reader import open_dataset
    >>> reviewed = load_reviewed("decisions.csv", open_dataset("laion_subset"), keys, captions)  # doctest: +SKIP
    >>> len(reviewed.wrong), len(reviewed.fine)                                                   # doctest: +SKIP
    (7, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curate import decisions as decisions_io
from dataio.errors import DataError
from dataio.keyed import check_captions
from dataio.reader import Dataset

REMOVED_REASON = f"reviewed: {decisions_io.WRONG_CAPTION}"
SPARED_REASON = f"reviewed: {decisions_io.FINE} (the ranking would have removed it)"


@dataclass(frozen=True)
class Reviewed:
    path: Path
    wrong: frozenset
    fine: frozenset
    counts: dict  # decision word -> rows


def load_reviewed(path, dataset: Dataset, keys: set, captions: dict) -> Reviewed:
    """The decisions file, checked against the data's keys and captions (`keys`, `captions` of `dataset`)."""
    path = Path(path)
    table = decisions_io.read_decisions(path)
    unknown = sorted(set(table["key"]) - keys)
    if unknown:
        raise DataError(f"{path}: {len(unknown)} of {len(table)} keys are not in {dataset.path} (e.g. {unknown[0]}); "
                        f"these decisions were made on another dataset: review the report of "
                        f"`python cli.py flag --data {dataset.path}`")
    check_captions(path, dict(zip(table["key"], table["caption"])), captions, dataset.path,
                   f"these decisions were made on another dataset or before the data changed: review the report of "
                   f"`python cli.py flag --data {dataset.path}`")
    counts = {word: int((table["decision"] == word).sum()) for word in decisions_io.DECISIONS}
    return Reviewed(path, frozenset(decisions_io.keys_decided(table, decisions_io.WRONG_CAPTION)),
                    frozenset(decisions_io.keys_decided(table, decisions_io.FINE)), counts)
