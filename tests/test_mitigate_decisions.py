"""`mitigate --decisions`: the pairs reviewed wrong caption go, a pair reviewed fine stays; files keyed by key
(decisions, scores) are checked against the data's captions before anything is written."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from test_mitigate_remove import data_captions, expected_top, input_keys, removed_keys, write_scores
from test_report_browser import SUMMARY_LINES, Opened, browser  # noqa: F401

import cli
from curate import decisions as decisions_io
from curate import outputs, report_html
from curate.rankings import DEFAULT_RANKING, RANKINGS
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.writer import Keep, write_dataset
from mitigation.strategies import mitigate

N = 24
RANKING = RANKINGS[DEFAULT_RANKING].column


@pytest.fixture(scope="module")
def data(make_synthetic, tmp_path_factory):
    copy = tmp_path_factory.mktemp("decisions") / "shapes"
    shutil.copytree(make_synthetic(n=N, fmt="webdataset", inject=0.0, seed=8), copy)
    return copy


@pytest.fixture(scope="module")
def scores(data):
    return write_scores(data, input_keys(data))


@pytest.fixture(scope="module")
def other(make_synthetic):
    """Another download of the same size: the same keys, other pairs behind them."""
    return make_synthetic(n=N, fmt="webdataset", inject=0.0, seed=9)


def write_decisions(path, data, chosen: dict, captions: dict | None = None) -> None:
    captions = captions or data_captions(data)
    pd.DataFrame({"key": list(chosen), "decision": list(chosen.values()), "decided_at": "2025-01-31T12:00:00.000Z",
                  "caption": [captions[key] for key in chosen]}).to_csv(path, index=False)


def run_cli(data, out, *extra) -> int:
    return cli.main(["mitigate", "--data", str(data), "--strategy", "remove", "--out", str(out), "--no-progress",
                     *extra])


def test_twelve_reviewed_in_the_report_remove_exactly_the_seven_wrong(browser, data, scores, tmp_path):  # noqa: F811
    """The loop end to end: flag's report, a keyboard review of 12 flagged pairs, its export, mitigate."""
    frame = scores.assign(score=scores[RANKING], flagged=scores[RANKING].rank(ascending=False) <= 12,
                          reasons="high combined suspicion")
    thumbnails = {s.key: report_html.thumbnail_uri(s.image, s.image_ext) for s in open_dataset(data).samples()}
    page = outputs.write_report(tmp_path / "report.html", frame, thumbnails, SUMMARY_LINES)
    tab = Opened(browser, page)
    tab.page.click("#review-toggle")
    walked = []
    for key in "wfwwfwfwwfwf":
        walked.append(tab.keys()[0])
        tab.page.keyboard.press(key)
    with tab.page.expect_download() as download:
        tab.page.click("#export-decisions")
    exported = tmp_path / "decisions.csv"
    download.value.save_as(exported)
    tab.page.close()
    assert tab.errors == []
    wrong = {key for key, press in zip(walked, "wfwwfwfwwfwf") if press == "w"}
    assert len(wrong) == 7 and set(walked) == set(frame.loc[frame["flagged"], "key"])

    assert run_cli(data, tmp_path / "out", "--decisions", str(exported)) == 0
    assert removed_keys(tmp_path / "out") == wrong
    manifest = read_manifest(tmp_path / "out").set_index("key")
    assert all(manifest.loc[sorted(wrong), "reason"] == "remove: reviewed: wrong caption")
    assert sorted(s.key for s in open_dataset(tmp_path / "out").samples()) == sorted(set(input_keys(data)) - wrong)


@pytest.mark.parametrize("verify_images", [True, False])  # False: webdataset samples copied unread, by key
def test_with_a_count_the_ranking_skips_pairs_reviewed_fine(data, scores, tmp_path, verify_images):
    ranked = list(scores.sort_values(RANKING, ascending=False)["key"])
    fine, wrong, unsure = ranked[:2], ranked[-3:], ranked[2:3]
    write_decisions(tmp_path / "d.csv", data, {**{k: "fine" for k in fine}, **{k: "wrong caption" for k in wrong},
                                              **{k: "unsure" for k in unsure}})
    result = mitigate(data, "remove", tmp_path / "out", count=5, decisions=str(tmp_path / "d.csv"), progress=False,
                      verify_images=verify_images)
    assert removed_keys(result.path) == set(ranked[2:7]) | set(wrong)
    assert expected_top(scores, RANKING, k=5) & set(fine)  # the ranking alone would have taken them
    manifest = read_manifest(result.path).set_index("key")
    assert set(manifest.loc[fine, "action"]) == {"kept"}
    assert all(manifest.loc[fine, "reason"] == "remove: reviewed: fine (the ranking would have removed it)")
    assert all(manifest.loc[ranked[2:7], "reason"].str.startswith(f"remove: top 5 by {RANKING}"))
    stats, options = result.recipe["strategies"][0]["stats"], result.recipe["strategies"][0]["options"]
    assert stats["removed"] == 8 and stats["removed_reviewed"] == 3 and stats["kept_reviewed_fine"] == 2
    assert options["reviewed"] == {"wrong caption": 3, "fine": 2, "unsure": 1}


def test_a_threshold_never_takes_a_pair_reviewed_fine(data, scores, tmp_path):
    beyond = expected_top(scores, RANKING, threshold=0.5)
    fine = sorted(beyond)[:3]
    write_decisions(tmp_path / "d.csv", data, {k: "fine" for k in fine})
    result = mitigate(data, "remove", tmp_path / "out", threshold=0.5, decisions=str(tmp_path / "d.csv"),
                      progress=False)
    assert removed_keys(result.path) == beyond - set(fine)


def bad_decisions(kind: str, data, path) -> str:
    """Write a decisions file wrong in one way; return what its one-line error must say."""
    keys, captions = input_keys(data), data_captions(data)
    good = {keys[0]: "wrong caption", keys[1]: "fine"}
    if kind == "unknown key":
        write_decisions(path, data, {**good, "000999999": "fine"}, {**captions, "000999999": "x"})
        return "1 of 3 keys are not in"
    if kind == "unknown word":
        write_decisions(path, data, {**good, keys[2]: "Fine"})
        return "unknown decision 'Fine' for key"
    if kind == "no caption column":
        write_decisions(path, data, good)
        pd.read_csv(path, dtype=str).drop(columns="caption").to_csv(path, index=False)
        return "no column caption"
    if kind == "no decision column":
        write_decisions(path, data, good)
        pd.read_csv(path, dtype=str).rename(columns={"decision": "verdict"}).to_csv(path, index=False)
        return "no column decision"
    if kind == "key twice":
        write_decisions(path, data, good)
        pd.concat([pd.read_csv(path, dtype=str)] * 2).to_csv(path, index=False)
        return "is decided on more than one row"
    if kind == "another caption":
        write_decisions(path, data, good, {**captions, keys[1]: "a caption the data does not have"})
        return "1 of 2 keys have another caption"
    if kind == "empty file":
        path.write_text("")
        return "empty, not even a header line"
    assert kind == "no file"
    return "no decisions file"


@pytest.mark.parametrize("kind", ["unknown key", "unknown word", "no caption column", "no decision column",
                                  "key twice", "another caption", "empty file", "no file"])
@pytest.mark.parametrize("with_count", [False, True])
def test_a_bad_decisions_file_fails_in_one_line_before_writing(data, scores, tmp_path, capsys, kind, with_count):
    path = tmp_path / "decisions.csv"
    message = bad_decisions(kind, data, path)
    code = run_cli(data, tmp_path / "out", "--decisions", str(path), *(["--count", "3"] if with_count else []))
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_scores_of_another_dataset_sharing_the_keys_fail_before_writing(data, other, tmp_path, capsys):
    assert input_keys(other) == input_keys(data)
    mine, theirs = data_captions(data), data_captions(other)
    differ = sum(mine[key] != theirs[key] for key in mine)
    assert differ > 0
    foreign = tmp_path / "other.clipmem" / "scores.parquet"
    write_scores(other, input_keys(other), path=foreign)
    code = run_cli(data, tmp_path / "out", "--count", "10", "--scores", str(foreign))
    err = capsys.readouterr().err
    assert code == 2
    assert f"{differ} of {N} keys have another caption in {data}" in err and "rerun `python cli.py flag" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_data_changed_since_flag_is_caught_the_same_way(data, scores, tmp_path, capsys):
    """One caption rewritten after flag scored the folder: its scores and decisions no longer fit."""
    changed_key = input_keys(data)[4]
    changed = tmp_path / "shapes"

    def edit(sample):
        return Keep(caption="rewritten after flag") if sample.key == changed_key else Keep()

    write_dataset(open_dataset(data), changed, edit, progress=False)
    (tmp_path / "shapes.clipmem").mkdir()
    shutil.copy(data.parent / "shapes.clipmem" / "scores.parquet", tmp_path / "shapes.clipmem" / "scores.parquet")
    assert run_cli(changed, tmp_path / "out", "--count", "3") == 2
    err = capsys.readouterr().err
    assert f"1 of {N} keys have another caption" in err and f"key {changed_key}: 'rewritten after flag'" in err
    write_decisions(tmp_path / "d.csv", data, {changed_key: "fine"})
    assert run_cli(changed, tmp_path / "out", "--decisions", str(tmp_path / "d.csv")) == 2
    assert "1 of 1 keys have another caption" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_scores_without_captions_cannot_be_checked(data, scores, tmp_path, capsys):
    bare = tmp_path / "bare.parquet"
    scores.drop(columns="caption").to_parquet(bare)
    assert run_cli(data, tmp_path / "out", "--count", "3", "--scores", str(bare)) == 2
    assert "no caption column to check its keys against" in capsys.readouterr().err


def test_the_exported_format_is_what_mitigate_reads(tmp_path):
    """The page's column order and words come from curate.decisions, the module mitigate reads with."""
    page = report_html.render_report([{"key": "1", "caption": "c", "score": 1.0, "reasons": ""}], {}, "", [], ["score"])
    assert '"decision_columns":["key","decision","decided_at","caption"]' in page
    assert '"decisions":["wrong caption","fine","unsure"]' in page
    assert decisions_io.DECISIONS == ("wrong caption", "fine", "unsure")
