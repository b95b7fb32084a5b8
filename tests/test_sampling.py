"""flag --sample: reference models train on a sample; every other pair of the pool is scored by inference."""

import json

import pandas as pd

import cli
import curate


def test_sample_then_infer_scores_every_key_once_and_says_how(make_synthetic, tmp_path, capsys):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    result = curate.flag(data, tmp_path / "out", folds=2, epochs=2, batch_size=32, sample=120, progress=False)
    scores = result.scores
    assert len(scores) == 240 and scores["key"].is_unique
    assert scores["scored_by"].value_counts().to_dict() == {"in-sample": 120, "inference": 120}
    plan = json.loads((tmp_path / "out" / "models" / "plan.json").read_text())
    in_sample = set(scores.loc[scores["scored_by"] == "in-sample", "key"])
    assert in_sample == set(plan["scored"])
    assert {k for m in plan["models"] for k in m["train_keys"]} <= in_sample  # the models saw only the sample
    inferred = scores[scores["scored_by"] == "inference"]
    # only training gives csl and CLIPMem; inference gives held-out alignment, neighbours and a distilled score
    assert inferred["csl"].isna().all() and inferred["clipmem_raw"].isna().all()
    assert inferred[["clipscore", "neighbour", "score"]].notna().all().all()
    assert inferred["score"].between(0, 1).all()
    assert pd.read_parquet(tmp_path / "out" / "scores.parquet")["scored_by"].tolist() == scores["scored_by"].tolist()

    # --reuse with the saved sample models infers the same scores again, through the command line
    assert cli.main(["flag", "--data", str(data), "--out", str(tmp_path / "out"), "--reuse", "--no-progress"]) == 0
    again = pd.read_parquet(tmp_path / "out" / "scores.parquet").set_index("key")
    pd.testing.assert_series_equal(scores.set_index("key")["score"], again.loc[scores["key"], "score"], rtol=1e-5)


def test_a_sample_as_large_as_the_pool_is_refused(make_synthetic, tmp_path, capsys):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    code = cli.main(["flag", "--data", str(data), "--out", str(tmp_path / "o"), "--sample", "240", "--no-progress"])
    assert code == 2 and "--sample 240" in capsys.readouterr().err
