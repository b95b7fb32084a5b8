"""Exports: kept_keys.npy as DataComp's resharder reads a subset file, and the scores joined to img2dataset's parquet."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mitigation
from commands.cmd_mitigate import report
from dataio.errors import UsageError
from dataio.export import (
    KEPT_KEYS_NAME,
    UID_DTYPE,
    join_scores,
    kept_keys_in,
    scores_for_img2dataset,
    write_kept_keys_npy,
)
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.writer import Keep, Remove, write_dataset


@pytest.fixture(scope="module")
def source(make_synthetic):
    return make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)


def uid_of(key: str) -> str:
    """A DataComp-style uid: 32 hex digits; the first byte varies so the high halves differ too."""
    return hashlib.md5(key.encode()).hexdigest()


def decide_every_third(sample):
    number = int(sample.key)
    if number % 3 == 0:
        return Remove("test")
    if number % 3 == 1:
        return Keep(caption=f"new caption {number}")
    return Keep()


def kept_in_manifest(folder) -> list:
    manifest = read_manifest(folder)
    return sorted(manifest.loc[manifest.action.isin(["kept", "changed"]), "key"])


def test_kept_keys_without_uids_are_the_manifest_keys(source, tmp_path):
    write_dataset(open_dataset(source), tmp_path / "copy", decide_every_third, progress=False, verify_images=False)
    kept = write_kept_keys_npy(tmp_path / "copy", tmp_path / "copy" / KEPT_KEYS_NAME)
    array = np.load(kept.path, allow_pickle=False)
    assert kept.kind == "key" and array.dtype.kind == "U"
    assert array.tolist() == kept_in_manifest(tmp_path / "copy") and kept.count == 40
    assert sorted(p.name for p in (tmp_path / "copy").iterdir() if p.name.startswith(".")) == []


def with_uids(sample):
    decision = decide_every_third(sample)
    if isinstance(decision, Remove):
        return decision
    return Keep(caption=decision.caption, meta_update={"uid": uid_of(sample.key)})


def test_kept_keys_with_uids_are_what_the_datacomp_resharder_looks_up(source, tmp_path):
    write_dataset(open_dataset(source), tmp_path / "uids", with_uids, progress=False, verify_images=False)
    kept = write_kept_keys_npy(tmp_path / "uids", tmp_path / "kept.npy")
    subset = np.load(kept.path, allow_pickle=False)
    assert kept.kind == "uid" and subset.dtype == np.dtype("u8,u8") == UID_DTYPE
    kept_keys = kept_in_manifest(tmp_path / "uids")
    assert sorted(kept_keys_in(kept.path)) == sorted(uid_of(k) for k in kept_keys)
    assert np.array_equal(subset, np.sort(subset))  # the resharder binary-searches it
    # the lookup resharder.py makes for each sample's json uid
    for key in read_manifest(tmp_path / "uids").key:
        uid = np.array([divmod(int(uid_of(key), 16), 2**64)], UID_DTYPE)[0]
        found = np.searchsorted(subset, uid, "right") - np.searchsorted(subset, uid, "left")
        assert found == (1 if key in kept_keys else 0), key


@pytest.mark.parametrize("uids_in", ["tables and json", "json only"])
def test_kept_uids_come_from_the_tables_or_else_the_json(source, tmp_path, uids_in):
    out = write_dataset(open_dataset(source), tmp_path / "uids", with_uids, progress=False, verify_images=False).path
    if uids_in == "json only":  # a writer other than img2dataset may leave the tables without the column
        for table_path in out.glob("[0-9]*.parquet"):
            table = pq.read_table(table_path)
            pq.write_table(table.drop_columns(["uid"]), table_path)
    kept = write_kept_keys_npy(out, tmp_path / "kept.npy")
    assert kept.kind == "uid"
    assert sorted(kept_keys_in(kept.path)) == sorted(uid_of(k) for k in kept_in_manifest(out))


def test_one_kept_sample_without_a_uid_means_keys_are_written(source, tmp_path):
    without_uid = next(s.key for s in open_dataset(source).samples(verify_images=False) if int(s.key) % 3 == 2)

    def most_with_uids(sample):
        return Keep() if sample.key == without_uid else with_uids(sample)

    write_dataset(open_dataset(source), tmp_path / "mixed", most_with_uids, progress=False, verify_images=False)
    kept = write_kept_keys_npy(tmp_path / "mixed", tmp_path / "kept.npy")
    assert kept.kind == "key" and kept_keys_in(kept.path) == kept_in_manifest(tmp_path / "mixed")


def test_a_manifest_frame_or_a_key_list_can_be_given(source, tmp_path):
    write_dataset(open_dataset(source), tmp_path / "uids", with_uids, progress=False, verify_images=False)
    manifest = read_manifest(tmp_path / "uids")
    from_frame = write_kept_keys_npy(manifest, tmp_path / "frame.npy")
    assert from_frame.kind == "key" and kept_keys_in(from_frame.path) == kept_in_manifest(tmp_path / "uids")
    some_kept = kept_in_manifest(tmp_path / "uids")[3:5]
    from_list = write_kept_keys_npy(some_kept, tmp_path / "list.npy", data=tmp_path / "uids")
    assert from_list.kind == "uid" and sorted(kept_keys_in(from_list.path)) == sorted(uid_of(k) for k in some_kept)


def test_mitigate_writes_kept_keys_and_reports_them(source, tmp_path):
    samples = sorted((s.key, s.caption) for s in open_dataset(source).samples(verify_images=False))
    keys = [key for key, _ in samples]
    scores = tmp_path / "scores.parquet"
    pd.DataFrame({"key": keys, "caption": [caption for _, caption in samples],
                  "random": np.linspace(0, 1, len(keys))}).to_parquet(scores)
    result = mitigation.mitigate(source, "remove", tmp_path / "removed", count=5, by="random", scores=str(scores),
                                 progress=False)
    assert result.kept_keys.path == tmp_path / "removed" / KEPT_KEYS_NAME
    assert kept_keys_in(result.kept_keys.path) == kept_in_manifest(tmp_path / "removed") == keys[:-5]
    assert f"kept keys: {result.kept_keys.path} (55 img2dataset keys" in report(result)


def fake_scores(keys) -> pd.DataFrame:
    return pd.DataFrame({
        "key": keys,
        "caption": ["copied from the data"] * len(keys),
        "score": np.linspace(0, 1, len(keys)),
        "flagged": [i % 7 == 0 for i in range(len(keys))],
        "reasons": [["high memorization"] if i % 7 == 0 else [] for i in range(len(keys))],
        "status": ["scored"] * len(keys),  # a name the shard parquet uses too
    })


def test_scores_join_every_key_of_every_shard_parquet(source):
    keys = sorted(s.key for s in open_dataset(source).samples(verify_images=False))
    frame = fake_scores(keys)
    scores = scores_for_img2dataset(frame)
    assert scores.schema.field("key").type == pa.string() and "caption" not in scores.column_names
    expected = dict(zip(frame.key, frame.score))
    joined_keys = []
    for shard in sorted(source.glob("*.parquet")):
        table = pq.read_table(shard)
        joined = join_scores(table, scores)
        assert joined.num_rows == table.num_rows
        assert joined.column("key").to_pylist() == table.column("key").to_pylist()  # row order kept
        assert joined.column("caption").to_pylist() == table.column("caption").to_pylist()
        assert joined.column("status_score").to_pylist() == ["scored"] * table.num_rows
        for key, score in zip(joined.column("key").to_pylist(), joined.column("score").to_pylist()):
            assert score == expected[key]
        joined_keys += joined.column("key").to_pylist()
    assert sorted(joined_keys) == keys


def test_integer_keys_are_padded_like_img2dataset_and_missing_keys_get_nulls(source):
    shard = sorted(source.glob("*.parquet"))[0]
    table = pq.read_table(shard)
    width = len(table.column("key")[0].as_py())
    keys = [int(k) for k in table.column("key").to_pylist()]
    frame = pd.DataFrame({"key": keys[1:], "score": [float(k) for k in keys[1:]]})
    with pytest.raises(UsageError, match="key_width"):
        scores_for_img2dataset(frame)
    joined = join_scores(table, scores_for_img2dataset(frame, key_width=width))
    scores = joined.column("score").to_pylist()
    assert scores[0] is None and scores[1:] == [float(k) for k in keys[1:]]
