"""Exports for the tools users already have: DataComp's resharder and img2dataset's per-shard parquet.

- `write_kept_keys_npy`: the keys a mitigated folder kept, as the subset file DataComp's `resharder.py
  --subset-file` reads (a sorted numpy array of 128-bit uids), or as img2dataset keys where the data
  has no uids.
- `scores_for_img2dataset` / `join_scores`: the flag scores as columns keyed like img2dataset's
  NNNNN.parquet, and joined onto one.

Example (a manifest of three keys, one removed; the data has no uids, so the keys are written):
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from pathlib import Path
    >>> manifest = pd.DataFrame({"key": ["000000002", "000000000", "000000001"],
    ...                          "action": ["kept", "changed", "removed"]})
    >>> kept = write_kept_keys_npy(manifest, Path(tempfile.mkdtemp()) / "kept_keys.npy")
    >>> kept.kind, kept.count, np.load(kept.path).tolist()
    ('key', 2, ['000000000', '000000002'])
    >>> scores = scores_for_img2dataset(pd.DataFrame({"key": [1, 2], "score": [0.5, 0.9]}), key_width=9)
    >>> scores.column("key").to_pylist()
    ['000000001', '000000002']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dataio.atomic import atomic_write
from dataio.errors import UsageError
from dataio.manifest import read_manifest
from dataio.reader import open_dataset

KEPT_KEYS_NAME = "kept_keys.npy"
# DataComp's subset file: each 128-bit uid as (high 64 bits, low 64 bits), sorted, so the resharder can
# binary-search it (resharder.py: np.dtype("u8,u8"), np.searchsorted).
UID_DTYPE = np.dtype("u8,u8")
KEPT_ACTIONS = ("kept", "changed")
_UID = re.compile(r"[0-9a-fA-F]{1,32}")
# Columns of the scores table that copy the data itself (img2dataset's parquet has them already).
DATA_COLUMNS = ("caption", "category", "injected", "noise", "original_caption")
SCORE_SUFFIX = "_score"  # for a score column whose name the shard table already uses


@dataclass(frozen=True)
class KeptKeys:
    """What `write_kept_keys_npy` wrote: `kind` "uid" (DataComp uids, u8,u8) or "key" (img2dataset keys)."""

    path: Path
    count: int
    kind: str

    def describe(self) -> str:
        if self.kind == "uid":
            return f"{self.count} DataComp uids (resharder.py --subset-file)"
        return f"{self.count} img2dataset keys (no uid in the samples' json)"


def write_kept_keys_npy(manifest_or_keys, path, data=None) -> KeptKeys:
    """Write the kept keys as a `.npy` subset file; atomically.

    manifest_or_keys: a folder written by `write_dataset` (its manifest gives the keys, its samples the
    uids), a manifest DataFrame (its kept and changed rows), or the kept keys themselves.
    data: the folder whose samples' json give the uids, when the first argument is not that folder.

    Where every kept sample's json has a hex `uid` (DataComp's pools do), the file holds them as
    DataComp's resharder takes them: a sorted structured array of two uint64, (high, low). Otherwise
    (no data to read, or a kept sample without a valid uid) it holds the img2dataset keys, sorted, as a
    plain string array, which `np.load` reads without pickle; `KeptKeys.kind` says which.
    """
    keys = _kept_keys(manifest_or_keys)
    if data is None and isinstance(manifest_or_keys, (str, Path)):
        data = manifest_or_keys
    uids = _uids_of(data, keys) if data is not None and keys else None
    if uids is not None:
        array, kind = np.sort(np.array([uid_pair(uid) for uid in uids], dtype=UID_DTYPE)), "uid"
    else:
        array, kind = np.array(sorted(keys), dtype=str), "key"
    path = Path(path)
    atomic_write(path, lambda tmp: _save_npy(tmp, array))
    return KeptKeys(path=path, count=len(array), kind=kind)


def uid_pair(uid: str) -> tuple:
    """A hex uid as DataComp's resharder splits it: divmod by 2**64, the high half first.

    >>> uid_pair("0000000000000001ffffffffffffffff")
    (1, 18446744073709551615)
    """
    return divmod(int(uid, 16), 2**64)


def uid_hex(pair) -> str:
    """The inverse of `uid_pair`: 32 hex digits."""
    high, low = (int(half) for half in pair)
    return f"{high:016x}{low:016x}"


def _kept_keys(manifest_or_keys) -> list:
    if isinstance(manifest_or_keys, pd.DataFrame):
        frame = manifest_or_keys
        return frame.loc[frame["action"].isin(KEPT_ACTIONS), "key"].astype(str).tolist()
    if isinstance(manifest_or_keys, (str, Path)):
        return _kept_keys(read_manifest(manifest_or_keys))
    return [str(key) for key in manifest_or_keys]


def _uids_of(data, keys: list) -> Optional[list]:
    """Each key's uid, in the order of `keys`; None if any kept sample lacks one. The shards' metadata
    tables give them where every table has a `uid` column (img2dataset's --save_additional_columns, as
    DataComp downloads), without reading a sample; otherwise the samples' json."""
    wanted = set(keys)
    dataset = open_dataset(data)
    found = _uids_from_tables(dataset, wanted)
    if found is None:
        found = {}
        for sample in dataset.samples(keys=wanted, verify_images=False):
            uid = sample.meta.get("uid")
            if not isinstance(uid, str) or not _UID.fullmatch(uid):
                return None
            found[sample.key] = uid
    if len(found) < len(wanted) or not all(isinstance(found[k], str) and _UID.fullmatch(found[k]) for k in wanted):
        return None
    return [found[key] for key in keys]


def _uids_from_tables(dataset, wanted: set) -> Optional[dict]:
    """Key -> uid of the wanted keys from the shards' metadata tables; None where a table has no uid column."""
    found = {}
    for shard in dataset.shards:
        table = dataset.metadata(shard)
        if table is None or "uid" not in table.column_names or "key" not in table.column_names:
            return None
        for key, uid in zip(table.column("key").to_pylist(), table.column("uid").to_pylist()):
            if key in wanted:
                found.setdefault(key, uid)
    return found


def _save_npy(tmp: Path, array: np.ndarray) -> None:
    # np.save given a name adds ".npy" to it; given a file it writes there, under the temporary name
    with open(tmp, "wb") as stream:
        np.save(stream, array, allow_pickle=False)


def scores_for_img2dataset(scores_frame: pd.DataFrame, key_width: Optional[int] = None) -> pa.Table:
    """The flag scores table as a pyarrow table joinable to img2dataset's per-shard parquet on `key`.

    `key` becomes a string column, as img2dataset writes keys (zero-padded: "000000042"); integer keys
    are padded to `key_width` digits (img2dataset's width: shard digits plus sample digits, usually 9).
    Every other column is a score, a rank, a flag or a reason; the columns that copy the data itself
    (caption, category, ...) are left out, the shard parquet has them.
    """
    if "key" not in scores_frame.columns:
        raise UsageError("the scores table has no `key` column; give the flag command's scores.parquet")
    keys = scores_frame["key"]
    if pd.api.types.is_integer_dtype(keys):
        if key_width is None:
            raise UsageError("the scores' keys are integers; give key_width (img2dataset pads keys, usually to 9 digits)")
        keys = keys.map(lambda key: f"{key:0{key_width}d}")
    columns = [c for c in scores_frame.columns if c != "key" and c not in DATA_COLUMNS]
    frame = scores_frame[columns].copy()
    frame.insert(0, "key", keys.astype(str).to_numpy())
    return pa.Table.from_pandas(frame, preserve_index=False)


def join_scores(shard_table: pa.Table, scores: Union[pa.Table, pd.DataFrame]) -> pa.Table:
    """`shard_table` (an img2dataset NNNNN.parquet) with the score columns appended, row order kept.

    A key the scores lack gets nulls; a score column whose name the shard already uses gets the
    suffix "_score".
    """
    if isinstance(scores, pd.DataFrame):
        scores = scores_for_img2dataset(scores)
    shard_keys = shard_table.column("key").cast(pa.string())
    rows = pc.index_in(shard_keys, value_set=scores.column("key").cast(pa.string()))
    picked = scores.take(rows)
    joined = shard_table
    for name in picked.column_names:
        if name != "key":
            column_name = name + SCORE_SUFFIX if name in shard_table.column_names else name
            joined = joined.append_column(column_name, picked.column(name))
    return joined


def kept_keys_in(path) -> list:
    """The keys (or hex uids) a subset file holds, as strings: what a test or a user reads back."""
    array = np.load(path, allow_pickle=False)
    if array.dtype == UID_DTYPE:
        return [uid_hex(pair) for pair in array.tolist()]
    return array.tolist()
