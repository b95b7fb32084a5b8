"""flag --sample: reference models train on a sample; every other pair of the pool is scored by inference."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

import cli
import curate

ROOT = Path(__file__).resolve().parents[1]


def test_sample_then_infer_scores_every_key_once_and_says_how(make_synthetic, tmp_path, capsys):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    result = curate.flag(data, tmp_path / "out", folds=2, epochs=2, batch_size=32, sample=120, progress=False)
    scores = result.scores
    assert len(scores) == 240 and scores["key"].is_unique
    assert scores["scored_by"].value_counts().to_dict() == {"in-sample": 120, "inference": 120}
    plan = json.loads((tmp_path / "out" / "models" / "plan.json").read_text())
    in_sample = set(scores.loc[scores["scored_by"] == "in-sample", "key"])
    planted = set(result.canaries["key"])  # canaries are planted in the sample and never leave flag
    assert planted and not planted & set(scores["key"])
    assert in_sample == set(plan["scored"]) - planted
    # the models saw only the sample (and its canaries)
    assert {k for m in plan["models"] for k in m["train_keys"]} <= in_sample | planted
    inferred = scores[scores["scored_by"] == "inference"]
    # only training gives csl and CLIPMem; inference gives held-out alignment, neighbours and a distilled score
    assert inferred["csl"].isna().all() and inferred["clipmem_raw"].isna().all()
    assert inferred[["clipscore", "align_csls", "neighbour", "score"]].notna().all().all()
    assert inferred["score"].between(0, 1).all()
    assert pd.read_parquet(tmp_path / "out" / "scores.parquet")["scored_by"].tolist() == scores["scored_by"].tolist()
    # detection grades each ranking on the pairs it scores: CLIPMem on the sample, the default on all
    detection = result.summary["detection"]
    assert detection["clipmem"]["pairs"] == 120 and detection["combined-csls"]["pairs"] == 240

    # --reuse with the saved sample models infers the same scores again, through the command line
    assert cli.main(["flag", "--data", str(data), "--out", str(tmp_path / "out"), "--reuse", "--no-progress"]) == 0
    again = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("key")
    pd.testing.assert_series_equal(scores.set_index("key")["score"], again.loc[scores["key"], "score"], rtol=1e-5)


def test_a_sample_as_large_as_the_pool_is_refused(make_synthetic, tmp_path, capsys):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    code = cli.main(["flag", "--data", str(data), "--out", str(tmp_path / "o"), "--sample", "240", "--no-progress"])
    assert code == 2 and "--sample 240" in capsys.readouterr().err


def _shard_files(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "scores_by_shard").glob("*.parquet")}


def test_a_killed_run_resumes_without_retraining_and_redoes_only_unfinished_shards(make_synthetic, tmp_path):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    settings = dict(folds=2, epochs=1, batch_size=32, sample=120, progress=False)
    reference = curate.flag(data, tmp_path / "whole", **settings)

    # Kill a run once its first reference model is saved.
    out = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "cli.py"), "flag", "--data", str(data), "--out", str(out), "--folds", "2",
               "--epochs", "1", "--batch-size", "32", "--sample", "120", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_model = out / "models" / "fold0" / "csl.parquet"
    deadline = time.monotonic() + 600
    while not first_model.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert first_model.exists()
    saved = first_model.stat().st_mtime_ns

    # Started again: the saved model is reused, not retrained; the result equals the uninterrupted run's.
    resumed = curate.flag(data, out, **settings)
    assert first_model.stat().st_mtime_ns == saved
    pd.testing.assert_frame_equal(resumed.scores[["key", "score", "scored_by"]],
                                  reference.scores[["key", "score", "scored_by"]], rtol=1e-5)

    # A shard score file that is missing is recomputed; the finished ones are left as they are.
    before = _shard_files(out)
    missing = sorted(before)[0]
    (out / "scores_by_shard" / missing).unlink()
    again = curate.flag(data, out, **settings)
    after = _shard_files(out)
    assert set(after) == set(before) and after[missing] != before[missing]
    assert all(after[name] == before[name] for name in before if name != missing)
    pd.testing.assert_frame_equal(again.scores[["key", "score"]], reference.scores[["key", "score"]], rtol=1e-5)

    # Other models (here: another number of epochs) make every saved shard stale: all are scored again.
    other = curate.flag(data, out, **{**settings, "epochs": 2})
    assert all(mtime != after[name] for name, mtime in _shard_files(out).items())
    fresh = curate.flag(data, tmp_path / "fresh", **{**settings, "epochs": 2})
    pd.testing.assert_frame_equal(other.scores[["key", "score"]], fresh.scores[["key", "score"]], rtol=1e-5)


def test_two_torchrun_processes_score_the_pool_as_one_does(make_synthetic, tmp_path):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    one = tmp_path / "one"
    curate.flag(data, one, folds=2, epochs=1, batch_size=32, sample=120, progress=False)
    two = tmp_path / "two"
    shutil.copytree(one / "models", two / "models")  # the same models: the inference is what is split
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29500 + os.getpid() % 1000), str(ROOT / "cli.py"), "flag", "--data", str(data), "--out", str(two),
               "--reuse", "--no-progress"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    reused_alone = curate.flag(data, tmp_path / "one", reuse=True, progress=False).scores
    split = pd.read_parquet(two / "scores.parquet")
    assert sorted(split["key"]) == sorted(reused_alone["key"])
    pd.testing.assert_frame_equal(split.set_index("key").loc[reused_alone["key"], ["score", "clipscore", "neighbour"]],
                                  reused_alone.set_index("key")[["score", "clipscore", "neighbour"]])
