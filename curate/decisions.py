"""decisions.csv: what a reviewer decided about flagged pairs in report.html, as the page exports it.

One row per decided key, columns `key`, `decision`, `decided_at`, `caption`:
- decision: exactly one of DECISIONS ("wrong caption", "fine", "unsure");
- decided_at: when it was decided, ISO 8601 in UTC as the browser writes it (2025-01-31T12:00:00.000Z);
- caption: the caption the reviewer saw. A key is a position in the data, not an identity, so a command
  that applies decisions compares this caption with the data's before it writes anything.
A field that starts with = + - @, a tab or a carriage return (after any apostrophes) is written after one more
apostrophe, so a spreadsheet shows it rather than running it, and read without it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "decisions.csv"
    >>> _ = path.write_text('key,decision,decided_at,caption\\n000000001,fine,2025-01-31T12:00:00.000Z,"a dog, sitting"\\n')
    >>> read_decisions(path).to_dict("records")
    [{'key': '000000001', 'decision': 'fine', 'decided_at': '2025-01-31T12:00:00.000Z', 'caption': 'a dog, sitting'}]
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from dataio.errors import DataError, UsageError

WRONG_CAPTION, FINE, UNSURE = "wrong caption", "fine", "unsure"
DECISIONS = (WRONG_CAPTION, FINE, UNSURE)
COLUMNS = ("key", "decision", "decided_at", "caption")
# decided_at documents the review; applying a decision needs only these
REQUIRED = ("key", "decision", "caption")
FILE_NAME = "decisions.csv"
HOW_TO_MAKE = "export it with report.html's `export decisions.csv` button"


def read_decisions(path) -> pd.DataFrame:
    """The file's rows as strings in COLUMNS order, checked: columns, decision words, one row per key.

    UsageError when the file is missing, DataError when its content is wrong; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no decisions file; {HOW_TO_MAKE}")
    table = _read_csv(path)
    missing = [name for name in REQUIRED if name not in table.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} (has {', '.join(map(str, table.columns)) or 'none'}); "
                        f"{HOW_TO_MAKE}")
    if "decided_at" not in table.columns:
        table["decided_at"] = ""
    _check_rows(path, table)
    return table[list(COLUMNS)].reset_index(drop=True)


# report.html writes a field that a spreadsheet would run as a formula after one apostrophe (CSV injection); one
# apostrophe before such a start is taken off again.
ESCAPED_FORMULA = re.compile(r"^'(?='*[=+\-@\t\r])")


def unescape_formula(text: str) -> str:
    """A field as report.html's export found it.

    >>> [unescape_formula(t) for t in ["'=SUM(A1)", "''-1", "'quoted'", "=raw"]]
    ['=SUM(A1)', "'-1", "'quoted'", '=raw']
    """
    return ESCAPED_FORMULA.sub("", text, count=1)


def _read_csv(path: Path) -> pd.DataFrame:
    # Every field as text: keys keep their leading zeros and a caption "NA" stays a caption.
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig").map(unescape_formula)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty, not even a header line; {HOW_TO_MAKE}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a readable CSV file ({reason}); {HOW_TO_MAKE}") from None


def _check_rows(path: Path, table: pd.DataFrame) -> None:
    empty = table["key"].str.strip() == ""
    if empty.any():
        raise DataError(f"{path}: row {_row(table, empty)} has no key; every row needs the key of a pair")
    unknown = ~table["decision"].isin(DECISIONS)
    if unknown.any():
        first = table[unknown].iloc[0]
        raise DataError(f"{path}: unknown decision {first['decision']!r} for key {first['key']} "
                        f"({int(unknown.sum())} rows like it); use exactly "
                        + ", ".join(repr(word) for word in DECISIONS))
    repeated = table["key"].duplicated(keep=False)
    if repeated.any():
        raise DataError(f"{path}: key {table.loc[repeated, 'key'].iloc[0]} is decided on more than one row "
                        f"(rows {', '.join(str(i + 1) for i in table.index[repeated][:3])}); keep one row per key")


def _row(table: pd.DataFrame, selected: pd.Series) -> int:
    """The first selected row, counted from 1 after the header (a quoted caption may span file lines)."""
    return int(table.index[selected][0]) + 1


def keys_decided(decisions: pd.DataFrame, decision: str) -> set:
    """The keys a reviewer gave this decision."""
    return set(decisions.loc[decisions["decision"] == decision, "key"])
