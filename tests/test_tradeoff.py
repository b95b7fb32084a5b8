"""tradeoff: a tiny end-to-end run on synthetic shapes writes the table, the markdown and the plot."""

import json

import pandas as pd
import pytest

import mitigation
from dataio.errors import UsageError
from dataio.reader import open_dataset
from mitigation.tradeoff import parse_strategy_list

STRATEGIES = "baseline,text-aug,text-noise:sigma=0.3,remove:by=random:count=5"


def _scores_for(data, path):
    """A scores table like flag's, for remove:by=random (its other columns are not read here)."""
    keys = sorted(s.key for s in open_dataset(data).samples())
    frame = pd.DataFrame({"key": keys, "random": [(i * 7919 % 101) / 101 for i in range(len(keys))]})
    for column in ("score", "clipmem", "clipscore", "csl"):
        frame[column] = frame["random"]
    frame.to_parquet(path, index=False)
    return frame


def test_tiny_tradeoff_writes_table_markdown_plot_and_configs(make_synthetic, tmp_path):
    data = make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
    scores = _scores_for(data, tmp_path / "scores.parquet")
    out = tmp_path / "tradeoff"
    result = mitigation.tradeoff(data, STRATEGIES, out, seeds=2, epochs=1, batch_size=32,
                                 scores=tmp_path / "scores.parquet", progress=False)
    assert result.paths["csv"] == out / "tradeoff.csv" and len(result.rows) == 4 * 2
    table = pd.read_csv(out / "tradeoff.csv")
    assert len(table) == 4 * 2
    assert list(dict.fromkeys(table["strategy"])) == STRATEGIES.split(",")
    for column in ("memorization", "linear_probe_acc", "zeroshot_words_acc", "i2t_r1_caption", "i2t_r5_caption"):
        assert table[column].notna().all(), column
    markdown = (out / "tradeoff.md").read_text()
    assert "Pareto front" in markdown and all(name in markdown for name in STRATEGIES.split(","))
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    configs = {p.name: json.loads(p.read_text()) for p in (out / "configs").glob("*.json")}
    assert len(configs) == 8
    noise = configs["text-noise_sigma-0.3_seed0.json"]["training"]
    assert noise["text_noise_sigma"] == 0.3 and not noise["caption_sampling"]
    assert configs["text-aug_seed1.json"]["training"]["caption_sampling"] is True
    # remove ran through the real mitigation: its copy lacks exactly the five top-ranked keys
    manifest = pd.read_parquet(out / "data" / "remove_by-random_count-5" / "manifest.parquet")
    assert set(manifest.loc[manifest["action"] == "removed", "key"]) == set(scores.nlargest(5, "random")["key"])


@pytest.mark.parametrize("text, message", [("", "empty"), ("remove:count", "name=value")])
def test_bad_strategy_lists_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_strategy_list(text)


def test_strategy_options_are_parsed_with_types():
    specs = parse_strategy_list("baseline,remove:by=random:count=100,text-noise:sigma=0.3")
    assert [s.names for s in specs] == [[], ["remove"], ["text-noise"]]
    assert specs[1].options == {"by": "random", "count": 100} and specs[2].options == {"sigma": 0.3}
