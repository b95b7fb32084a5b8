"""flag: CLIPMem scores for every key, detection of injected swaps, outputs, --reuse, bad input."""

import json
import re

import pandas as pd
import pytest

import cli
import curate
from curate.rankings import DEFAULT_RANKING, inputs_used
from dataio.reader import open_dataset
from dataio.writer import Keep, write_dataset

from conftest import ATTACK_CAPTION as SCRIPT


@pytest.fixture(scope="module")
def flagged_run(shapes_run):
    """The shared run (conftest.shapes_run): kfold on synthetic shapes, 10 % swapped, one HTML-attack caption."""
    data, out, victim, result, _ = shapes_run
    assert result.out == data.with_name("shapes.clipmem")
    return data, out, victim, result


def test_kfold_scores_every_key_exactly_once(flagged_run):
    data, out, _, _ = flagged_run
    scores = pd.read_parquet(out / "scores.parquet")
    keys = {s.key for s in open_dataset(data).samples()}
    assert sorted(scores["key"]) == sorted(keys)
    assert scores["key"].is_unique
    assert set(scores["group"]) == {"0", "1", "2"}


def test_swapped_pairs_are_more_memorized_and_the_default_ranking_beats_random(flagged_run):
    _, out, _, _ = flagged_run
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["clipmem"].between(0, 1).all()
    injected = scores["injected"]
    # measured here: 0.28 against 0.06 (seeds 0 and 1), so twice the clean mean leaves room for any machine
    assert scores.loc[injected, "clipmem_raw"].mean() > 2 * scores.loc[~injected, "clipmem_raw"].mean()
    detection = json.loads((out / "summary.json").read_text())["detection"]
    assert detection["combined"]["auroc"] >= detection["random"]["auroc"] + 0.2
    assert detection["combined"]["auroc"] >= 0.75
    # the neighbour score alone reached 0.97 here: half that margin over random survives another machine
    assert detection["neighbour"]["auroc"] >= detection["random"]["auroc"] + 0.2
    assert scores[["nbr_image", "nbr_text", "neighbour", "align_csls"]].notna().all().all()
    # the default ranking rests on the hubness-corrected alignment, the training loss and the neighbour score
    assert detection["combined-csls"]["auroc"] >= detection["random"]["auroc"] + 0.2
    assert inputs_used(DEFAULT_RANKING, scores) == "combined-csls of align_csls + csl + neighbour"


def test_outputs_say_why_and_the_report_escapes_captions(flagged_run):
    _, out, _, result = flagged_run
    scores = pd.read_parquet(out / "scores.parquet")
    flagged = pd.read_parquet(out / "flagged.parquet")
    assert set(flagged["key"]) == set(scores.loc[scores["flagged"], "key"])
    # the Python API returns what the files hold, the flagged keys most suspect first
    assert result.flagged_keys == flagged["key"].tolist()
    assert result.paths["scores"] == out / "scores.parquet" and result.summary["scored"] == len(scores)
    pd.testing.assert_frame_equal(result.scores.reset_index(drop=True), scores)
    assert len(flagged) >= round(0.05 * len(scores))
    assert (flagged["reasons"].str.len() > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == len(scores) and summary["models_trained"] == 3
    for side in ("image_mem", "text_mem"):
        assert side in summary["means"]
    html_text = (out / "report.html").read_text()
    assert "data:image/png;base64," in html_text  # the histogram, embedded
    # the page builds its cards from one embedded JSON array of the flagged rows, most suspect first
    rows = json.loads(re.search(r"id='report-rows'>(.*?)</script>", html_text).group(1))
    assert [row["key"] for row in rows] == flagged["key"].tolist()


def test_reuse_trains_nothing_and_reproduces_scores(flagged_run, capsys):
    data, out, victim, _ = flagged_run
    before = pd.read_parquet(out / "scores.parquet").set_index("key")
    # flag nearly everything so the attack caption is certainly in the gallery
    assert cli.main(["flag", "--data", str(data), "--reuse", "--top-frac", "0.99", "--no-progress"]) == 0
    assert "report.html" in capsys.readouterr().out
    after = pd.read_parquet(out / "scores.parquet").set_index("key")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models_trained"] == 0 and summary["settings"]["reused_models"]
    pd.testing.assert_series_equal(before["clipmem_raw"], after.loc[before.index, "clipmem_raw"], rtol=1e-5)
    pd.testing.assert_series_equal(before["csl"], after.loc[before.index, "csl"], rtol=1e-6)
    html_text = (out / "report.html").read_text()
    assert SCRIPT not in html_text
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html_text


def test_paper_protocol_scores_exactly_the_candidates(make_synthetic, tmp_path):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    out = tmp_path / "paper"
    curate.flag(data, out, protocol="paper", epochs=2, batch_size=32, progress=False)
    plan = json.loads((out / "models" / "plan.json").read_text())
    scores = pd.read_parquet(out / "scores.parquet")
    candidates = sorted(k for k, group in plan["groups"].items() if group == "candidates")
    assert sorted(scores["key"]) == candidates
    assert set(plan["models"][0]["train_keys"]) & set(candidates) == set(candidates)
    assert not set(plan["models"][1]["train_keys"]) & set(candidates)


@pytest.mark.parametrize("extra, message", [
    (["--folds", "200"], "too few"),
    (["--reuse"], "no saved reference models"),
    (["--top-frac", "1.5"], "--top-frac"),
])
def test_bad_requests_get_one_line_errors(make_synthetic, tmp_path, capsys, extra, message):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    code = cli.main(["flag", "--data", str(data), "--out", str(tmp_path / "o"), "--epochs", "1", "--no-progress", *extra])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "Traceback" not in error


def test_identical_captions_are_refused(make_synthetic, tmp_path, capsys):
    source = open_dataset(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1))
    same = tmp_path / "same"
    write_dataset(source, same, lambda s: Keep(caption="clip art", captions=[]), progress=False)
    assert cli.main(["flag", "--data", str(same), "--epochs", "1", "--no-progress"]) == 2
    assert "identical" in capsys.readouterr().err
