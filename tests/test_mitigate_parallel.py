"""mitigate under torchrun: two CPU processes write the same dataset as one, shard files byte for byte."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataio.errors import DataError
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from mitigation.parallel import PART_PREFIX, merge_parts
from mitigation.strategies import mitigate
from tests.test_mitigate_remove import input_keys, write_scores

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(make_synthetic, tmp_path_factory):
    copy = tmp_path_factory.mktemp("parallel") / "shapes"
    shutil.copytree(make_synthetic(n=120, fmt="webdataset", inject=0.1, seed=21), copy)
    write_scores(copy, input_keys(copy))
    return copy


def run_torchrun(arguments: list, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
               str(29600 + os.getpid() % 1000), str(ROOT / "cli.py"), *arguments]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_processes_write_the_same_dataset_as_one(data, tmp_path):
    assert len(open_dataset(data).shards) >= 3  # both ranks write, one of them more than one shard
    alone = mitigate(data, "remove,text-aug", tmp_path / "alone", count=15, n_aug=2, progress=False)
    split = tmp_path / "split"
    run = run_torchrun(["mitigate", "--data", str(data), "--strategy", "remove,text-aug", "--count", "15",
                        "--n-aug", "2", "--out", str(split), "--no-progress"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # one report, from rank 0

    names = sorted(p.name for p in split.iterdir())
    assert names == sorted(p.name for p in alone.path.iterdir())
    assert not [n for n in names if n.startswith(".")]  # no staging or manifest part left behind
    for shard in open_dataset(data).shards:
        assert (split / f"{shard}.tar").read_bytes() == (alone.path / f"{shard}.tar").read_bytes(), shard
        pd.testing.assert_frame_equal(pd.read_parquet(split / f"{shard}.parquet"),
                                      pd.read_parquet(alone.path / f"{shard}.parquet"))
    pd.testing.assert_frame_equal(read_manifest(split), read_manifest(alone.path))
    recipe = json.loads((split / "mitigation.json").read_text())
    assert recipe["counts"] == alone.recipe["counts"] and recipe["counts"]["removed"] == 15
    # counters that every rank adds to while writing are summed over the ranks
    assert [s["stats"] for s in recipe["strategies"]] == [s["stats"] for s in alone.recipe["strategies"]]
    assert recipe["strategies"][0]["stats"]["removed"] == 15


def test_a_key_written_by_two_ranks_stops_the_merge_with_both_shards_named(tmp_path):
    for rank, shard in enumerate(("00000", "00001")):
        rows = [{"key": "000000007", "shard": shard, "action": "kept", "reason": ""}]
        pd.DataFrame(rows).to_parquet(tmp_path / f"{PART_PREFIX}{rank:05d}.parquet")
    with pytest.raises(DataError, match="000000007 is in shards 00000 and 00001"):
        merge_parts(tmp_path, ["00000", "00001"])


def test_merged_parts_keep_the_shard_order_of_the_input(tmp_path):
    parts = {0: [("a", "00000"), ("b", "00000"), ("e", "00002")], 1: [("c", "00001"), ("d", "00001")]}
    for rank, rows in parts.items():
        frame = pd.DataFrame([{"key": k, "shard": s, "action": "kept", "reason": ""} for k, s in rows])
        frame.to_parquet(tmp_path / f"{PART_PREFIX}{rank:05d}.parquet")
    merged = merge_parts(tmp_path, ["00000", "00001", "00002", "00003"])
    assert [r["key"] for r in merged.rows()] == ["a", "b", "c", "d", "e"]
    assert list(merged.rows_by_shard) == ["00000", "00001", "00002", "00003"]  # an empty shard keeps its place
    assert not list(tmp_path.glob(f"{PART_PREFIX}*"))
