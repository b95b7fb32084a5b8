"""manifest.parquet: what happened to every input key (kept / removed / changed / unreadable) and why.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = [row("000000000", "00000", "kept"), row("000000001", "00000", "removed", "top 1 by clipmem")]
    >>> _ = write_manifest(rows, folder)
    >>> count_actions(rows)
    {'kept': 1, 'changed': 0, 'removed': 1, 'unreadable': 0}
    >>> read_manifest(folder).action.tolist()
    ['kept', 'removed']
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataio.atomic import atomic_write
from dataio.errors import DataError

MANIFEST_NAME = "manifest.parquet"
ACTIONS = ("kept", "changed", "removed", "unreadable")
SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("action", pa.string()), ("reason", pa.string())])


def row(key: str, shard: str, action: str, reason: str = "") -> dict:
    assert action in ACTIONS, action
    return {"key": key, "shard": shard, "action": action, "reason": reason}


def count_actions(rows: list) -> dict:
    counts = Counter(r["action"] for r in rows)
    return {action: counts.get(action, 0) for action in ACTIONS}


def write_manifest(rows: list, folder: Path) -> Path:
    """Written under a temporary name and renamed, like every other output file."""
    final = Path(folder) / MANIFEST_NAME
    atomic_write(final, lambda tmp: pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp))
    return final


def read_manifest(folder) -> pd.DataFrame:
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        raise DataError(f"{path}: no manifest; this folder was not written by this toolkit")
    return pd.read_parquet(path)
