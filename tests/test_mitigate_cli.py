"""`python cli.py mitigate`: output naming, formats, one-line errors, and the --expand copy open_clip trains on."""

import json
import shutil

import pytest
from test_open_clip_client import train_with_open_clip

import cli
from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.recipe import training_overrides


@pytest.fixture(scope="module")
def webdataset(make_synthetic):
    return make_synthetic(n=24, fmt="webdataset", inject=0.0, seed=8)


def samples(path) -> dict:
    return {s.key: s for s in open_dataset(path).samples()}


@pytest.mark.parametrize("fmt", ["parquet", "files", "webdataset"])
def test_output_is_in_the_input_format_with_manifest_and_recipe(make_synthetic, fmt, tmp_path, capsys):
    data = tmp_path / "shapes"
    source = open_dataset(make_synthetic(n=24, fmt=fmt, inject=0.0, seed=8))
    shutil.copytree(source.path, data)
    assert cli.main(["mitigate", "--data", str(data), "--strategy", "text-aug,text-noise", "--n-aug", "2",
                     "--no-progress"]) == 0
    out = tmp_path / "shapes.text-aug+text-noise"
    printed = capsys.readouterr().out
    assert str(out) in printed and "changed 24" in printed
    assert open_dataset(out).format == fmt
    before, after = samples(data), samples(out)
    assert before.keys() == after.keys()
    assert all(after[k].image == before[k].image and after[k].caption == before[k].caption for k in before)
    # text-aug alone: the primary caption and its augmentations, the data's other captions left out
    assert all(after[k].captions[0] == before[k].caption and len(after[k].captions) > 1 for k in before)
    assert all(not set(before[k].captions[1:]) & set(after[k].captions) for k in before)
    assert sorted(read_manifest(out).key) == sorted(before)
    assert training_overrides(out)["text_noise_sigma"] == 0.15


def test_existing_output_needs_overwrite(webdataset, tmp_path, capsys):
    args = ["mitigate", "--data", str(webdataset), "--strategy", "image-aug", "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(args) == 0
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("extra,message", [
    (["--strategy", "shuffle"], "unknown strategy shuffle; choose from remove, multi-caption, text-aug"),
    (["--strategy", "remove"], "exactly one of --count N, --frac F or --threshold T"),
    (["--strategy", "remove", "--count", "5"], "run `python cli.py flag --data"),
    (["--strategy", "text-aug", "--count", "5"], "--count belongs to remove"),
    (["--strategy", "text-aug", "--n-aug", "-1"], "--n-aug"),
    (["--strategy", "multi-caption", "--min-captions", "-2"], "--min-captions"),
    (["--strategy", "text-noise", "--sigma", "0"], "--sigma"),
    (["--strategy", "text-aug", "--paraphrase-model", "/no/such/model"], "/no/such/model"),
])
def test_bad_options_exit_2_with_one_line(webdataset, tmp_path, capsys, extra, message):
    code = cli.main(["mitigate", "--data", str(webdataset), "--out", str(tmp_path / "o"), "--no-progress"] + extra)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_help_lists_strategies_and_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["mitigate", "--help"])
    text = capsys.readouterr().out
    for word in ("text-aug", "multi-caption", "remove", "text-noise", "image-aug", "--expand", "--by", "--sigma"):
        assert word in text


def test_expand_writes_one_record_per_caption(webdataset, tmp_path, capsys):
    out = tmp_path / "aug"
    assert cli.main(["mitigate", "--data", str(webdataset), "--strategy", "text-aug", "--n-aug", "2",
                     "--out", str(out), "--expand", "--no-progress"]) == 0
    expanded = tmp_path / "aug.expanded"
    mitigated, records = samples(out), samples(expanded)
    assert len(records) == sum(len(s.captions) for s in mitigated.values())
    for key, sample in mitigated.items():
        for index, caption in enumerate(sample.captions):
            record = records[f"{key}_c{index}"]
            assert record.caption == caption and record.captions == [caption]
            assert record.image == sample.image
            assert record.meta["source_key"] == key and record.meta["caption_index"] == index
    sizes = json.loads((expanded / "sizes.json").read_text())
    assert sum(sizes.values()) == len(records)
    assert training_overrides(expanded)["caption_sampling"] is False
    assert f"--train-num-samples {len(records)}" in capsys.readouterr().out


def test_open_clip_trains_on_the_expanded_copy(make_synthetic, tmp_path):
    data = make_synthetic(n=24, fmt="parquet", inject=0.0, seed=8)
    out = tmp_path / "multi"
    assert cli.main(["mitigate", "--data", str(data), "--strategy", "multi-caption", "--min-captions", "3",
                     "--out", str(out), "--expand", "--no-progress"]) == 0
    expanded = tmp_path / "multi.expanded"
    records = sum(json.loads((expanded / "sizes.json").read_text()).values())
    assert records >= 3 * 24
    log = train_with_open_clip(expanded, records, tmp_path, batch_size=16)
    assert "Contrastive_loss" in log
