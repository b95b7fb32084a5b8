"""The csv of finished runs, written after each one so an interrupted trade-off keeps what it did.

A run is identified by its label (strategy, or ranking and count on the removal curve), its seed and a
hash of the settings that decide its result; a rerun with the same settings finds it and skips it. The
whole csv is rewritten to a temporary name and renamed (dataio.atomic), so a kill never leaves half a row.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> log = RunLog(Path(tempfile.mkdtemp()) / "runs.csv")
    >>> key = settings_hash({"epochs": 2})
    >>> log.add({"strategy": "baseline", "seed": 0, "settings": key, "memorization": 0.1})
    >>> log.find("baseline", 0, key)["memorization"], log.find("baseline", 1, key)
    (0.1, None)
    >>> RunLog(log.path).find("baseline", 0, key)["memorization"]
    0.1
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from dataio.atomic import atomic_write

# Columns read back as text whatever they hold: a hash like "1e5..." must not turn into a float.
TEXT_COLUMNS = {"strategy": str, "settings": str, "captions": str, "ranking": str}


def settings_hash(settings: dict) -> str:
    """A short, stable hash of a json-able dict (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return "s" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class RunLog:
    """Rows of finished runs, keyed by (label column, seed, settings hash)."""

    def __init__(self, path: Path, label: str = "strategy"):
        self.path, self.label = Path(path), label
        self.rows = _read(self.path) if self.path.exists() else []

    def find(self, label: str, seed: int, settings: str) -> dict | None:
        for row in self.rows:
            if self._key(row) == (label, seed, settings):
                return row
        return None

    def add(self, row: dict) -> None:
        """Replace any row with the same key, then rewrite the csv atomically."""
        key = self._key(row)
        self.rows = [r for r in self.rows if self._key(r) != key]
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: pd.DataFrame(self.rows).to_csv(tmp, index=False))

    def _key(self, row: dict) -> tuple:
        return row.get(self.label), int(row.get("seed", -1)), row.get("settings")


def _read(path: Path) -> list:
    frame = pd.read_csv(path, dtype={k: v for k, v in TEXT_COLUMNS.items()})
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value):
    """csv cells back as Python values; an empty cell is None, as it was before it was written."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value
