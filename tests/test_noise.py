"""demo-data --noise: the four noise types, the distinct-caption donor draw, rate bounds and fallbacks;
detection measured per caption-repeat stratum and per noise type.

Most tests work on hand-made url-list rows (what `inject_swaps_into` sees); one builds a small synthetic
set through the CLI to check what reaches the sample json.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import cli
from curate.flagging import build_scores_table, detection_report
from dataio.errors import UsageError
from dataio.reader import open_dataset
from demo.build import (
    BOILERPLATE_CAPTIONS,
    build_demo,
    caption_keywords,
    inject_swaps_into,
)
from demo.staging import row_for
from demo.synthetic import make_item
from train.data import table_from_tensors


def make_rows(spec: list) -> list:
    """Url-list rows from (category, caption, keywords) triples, clean as staging.row_for makes them."""
    return [
        {"caption": caption, "captions": [caption, f"{caption} (alt)"], "category": category,
         "source_id": f"row{i}", "keywords": keywords, "injected": False, "noise": None,
         "original_caption": None, "swapped_from": None}
        for i, (category, caption, keywords) in enumerate(spec)
    ]


def by_id(rows: list) -> dict:
    return {row["source_id"]: row for row in rows}


def varied_rows() -> list:
    """Three categories, captions unique, keywords shared across categories in places."""
    spec = []
    for category, words in (("birds", ["wing", "blue"]), ("cars", ["wheel", "blue"]), ("tools", ["metal"])):
        for i in range(10):
            word = words[i % len(words)]
            spec.append((category, f"{category} {i} {word}", [word]))
    return spec


@pytest.mark.parametrize("noise", ["cross-category", "within-category", "shared-keyword", "boilerplate"])
def test_each_noise_type_marks_its_rows_and_leaves_the_rest_clean(noise):
    rows = make_rows(varied_rows())
    originals = by_id(make_rows(varied_rows()))
    assert inject_swaps_into(rows, 0.2, seed=3, noise=noise) == 6
    injected = [row for row in rows if row["injected"]]
    assert len(injected) == 6
    for row in rows:
        own = originals[row["source_id"]]
        if not row["injected"]:
            assert row == own
            continue
        assert row["noise"] == noise
        assert row["original_caption"] == own["caption"] != row["caption"]
        if noise == "boilerplate":
            assert row["caption"] in BOILERPLATE_CAPTIONS
            assert row["captions"] == [row["caption"]] and row["swapped_from"] is None
            continue
        donor = originals[row["swapped_from"]]
        assert (row["caption"], row["captions"]) == (donor["caption"], donor["captions"])
        if noise == "within-category":
            assert donor["category"] == row["category"]
        else:
            assert donor["category"] != row["category"]
        if noise == "shared-keyword":
            assert set(donor["keywords"]) & set(own["keywords"])


def test_same_seed_same_swaps_and_another_seed_others():
    def swaps(seed):
        rows = make_rows(varied_rows())
        inject_swaps_into(rows, 0.3, seed=seed, noise="shared-keyword")
        return [(row["source_id"], row["swapped_from"]) for row in rows if row["injected"]]

    assert swaps(5) == swaps(5)
    assert swaps(5) != swaps(6)


def test_a_caption_on_most_images_does_not_dominate_the_donors():
    # 95 of the 100 "shapes" images share one caption; drawing donor images uniformly would give it to
    # about 95 % of the swapped "animals" rows, drawing over the 6 distinct captions to a sixth.
    spec = [("shapes", "gramastar. stars, shapes", ["stars"]) for _ in range(95)]
    spec += [("shapes", f"shape {i}", ["stars"]) for i in range(5)]
    spec += [("animals", f"animal {i}", ["fur"]) for i in range(100)]
    rows = make_rows(spec)
    inject_swaps_into(rows, 0.4, seed=0, noise="cross-category")
    into_animals = [row for row in rows if row["injected"] and row["category"] == "animals"]
    assert len(into_animals) >= 20
    repeated = sum(row["caption"] == "gramastar. stars, shapes" for row in into_animals)
    assert repeated <= math.ceil(len(into_animals) / 6)
    # the other direction: 100 distinct animal captions for the shapes rows, so no animal caption twice
    into_shapes = Counter(row["caption"] for row in rows if row["injected"] and row["category"] == "shapes")
    assert max(into_shapes.values()) == 1


def test_within_category_passes_over_rows_whose_category_has_one_caption():
    spec = [("solo", "the same caption", []) for _ in range(10)]
    spec += [("duo", f"caption {i}", []) for i in range(10)]
    for seed in range(5):
        rows = make_rows(spec)
        assert inject_swaps_into(rows, 0.4, seed=seed, noise="within-category") == 8
        assert {row["category"] for row in rows if row["injected"]} == {"duo"}


def test_shared_keyword_passes_over_rows_without_a_keyword_in_common():
    spec = [("birds", f"bird {i} blue", ["blue"]) for i in range(5)]
    spec += [("cars", f"car {i} blue", ["blue"]) for i in range(5)]
    spec += [("tools", f"tool {i} metal", ["metal"]) for i in range(10)]
    for seed in range(5):
        rows = make_rows(spec)
        assert inject_swaps_into(rows, 0.4, seed=seed, noise="shared-keyword") == 8
        assert {row["category"] for row in rows if row["injected"]} <= {"birds", "cars"}


def test_too_few_eligible_rows_is_a_usage_error_that_says_so():
    spec = [("solo", "the same caption", []) for _ in range(15)]
    spec += [("duo", f"caption {i}", []) for i in range(5)]
    rows = make_rows(spec)
    with pytest.raises(UsageError, match=r"--noise within-category: only 5 of 20 samples have a donor .* asks for 8"):
        inject_swaps_into(rows, 0.4, seed=0, noise="within-category")
    assert not any(row["injected"] for row in rows)  # nothing half-done
    no_shared = make_rows([("birds", "bird", ["wing"]), ("cars", "car", ["wheel"])] * 10)
    with pytest.raises(UsageError, match="shared-keyword: only 0 of 20"):
        inject_swaps_into(no_shared, 0.1, seed=0, noise="shared-keyword")


def test_boilerplate_never_gives_a_row_its_own_caption():
    rows = make_rows([("misc", text, []) for text in BOILERPLATE_CAPTIONS] * 2)
    inject_swaps_into(rows, 0.4, seed=1, noise="boilerplate")
    injected = [row for row in rows if row["injected"]]
    assert len(injected) == round(0.4 * len(rows))
    assert all(row["caption"].lower() != row["original_caption"].lower() for row in injected)


def test_keywords_are_the_listed_ones_a_caption_shows_or_a_shapes_colour_and_shape():
    row = {"captions": ["Red Kite. bird, bird of prey"], "keywords": ["Bird_of_prey", "hash", "0x8b7", "kite"]}
    assert caption_keywords(row) == {"bird of prey", "kite"}
    # synthetic shapes: the colour is in every phrasing; the shape may be named only by an adjective
    item = make_item(0, seed=0)
    keywords = caption_keywords(row_for(item))
    assert item.extra["color"] in keywords <= {item.extra["color"], item.extra["shape"]}


@pytest.mark.parametrize("rate", [0.01, 0.41, 1.5, -0.1])
def test_rates_outside_2_to_40_percent_are_usage_errors(rate, tmp_path):
    with pytest.raises(UsageError, match=r"^--inject-swaps must be 0 \(no noise\) or a fraction from 0.02 to 0.4"):
        build_demo(tmp_path / "x", n=10, source="synthetic", inject_swaps=rate)


@pytest.mark.parametrize("rate", [0.0, 0.02, 0.4])
def test_rates_at_the_bounds_pass_the_rate_check(rate, tmp_path):
    # A bad shard size is checked after the rate, so reaching its error means the rate was accepted.
    with pytest.raises(UsageError, match="--shard-size"):
        build_demo(tmp_path / "x", n=10, source="synthetic", inject_swaps=rate, samples_per_shard=0)


def test_cli_rejects_a_bad_rate_or_noise_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert cli.main(["demo-data", "--source", "synthetic", "--n", "10", "--inject-swaps", "0.5", "--out", out]) == 2
    error = capsys.readouterr().err.strip()
    assert "--inject-swaps" in error and len(error.splitlines()) == 1
    with pytest.raises(SystemExit) as stop:  # argparse refuses a name outside --noise's choices
        cli.main(["demo-data", "--source", "synthetic", "--noise", "typo", "--out", out])
    assert stop.value.code == 2
    with pytest.raises(UsageError, match="--noise must be one of"):
        build_demo(tmp_path / "y", n=10, source="synthetic", inject_swaps=0.1, noise="typo")


def test_cli_within_category_build_records_noise_in_the_json(tmp_path, capsys):
    out = tmp_path / "within"
    argv = ["demo-data", "--source", "synthetic", "--n", "60", "--inject-swaps", "0.1", "--noise", "within-category",
            "--seed", "0", "--processes", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    assert "noise injected: within-category, 6 captions" in capsys.readouterr().out
    samples = list(open_dataset(out).samples())
    assert len(samples) == 60
    injected = [s for s in samples if s.meta["injected"]]
    assert len(injected) == 6
    for sample in samples:
        own = make_item(int(sample.meta["source_id"].rsplit(":", 1)[1]), seed=0)
        if not sample.meta["injected"]:
            assert sample.meta["noise"] is None and sample.caption == own.caption
            continue
        donor = make_item(int(sample.meta["swapped_from"].rsplit(":", 1)[1]), seed=0)
        assert sample.meta["noise"] == "within-category"
        assert donor.category == own.category == sample.meta["category"]
        assert sample.meta["original_caption"] == own.caption != donor.caption == sample.caption


def test_scores_table_carries_the_noise_type():
    keys = [f"k{i}" for i in range(6)]
    meta = [{"injected": i < 2, "noise": ("boilerplate" if i == 0 else "within-category") if i < 2 else None}
            for i in range(6)]
    table = table_from_tensors(keys, torch.zeros(6, 3, 8, 8, dtype=torch.uint8), [f"caption {i}" for i in range(6)],
                               meta)
    measures = pd.DataFrame({"key": keys, "clipmem_raw": np.linspace(0, 1, 6), "align_g": np.linspace(1, 0, 6)})
    frame = build_scores_table(table, keys, measures, np.arange(6.0), "combined", seed=0)
    assert frame["noise"].tolist() == ["boilerplate", "within-category", None, None, None, None]
    assert frame["injected"].tolist() == [True, True, False, False, False, False]


def detection_frame() -> pd.DataFrame:
    """Eight pairs: the ranking finds the unique-caption and boilerplate swaps, misses the repeated ones."""
    return pd.DataFrame({
        "key": [f"k{i}" for i in range(8)],
        "injected": [True, False, False, True, False, True, False, False],
        "noise": ["boilerplate", None, None, "within-category", None, "boilerplate", None, None],
        "caption_repeats": [1, 1, 5, 5, 40, 40, 300, 300],
        "rank_combined": [0.9, 0.1, 0.8, 0.2, 0.3, 0.95, 0.6, 0.7],
        "rank_random": [0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7, 0.8],
    })


def test_detection_is_reported_per_caption_repeat_stratum_and_noise_type():
    report = detection_report(detection_frame(), top_frac=0.25)
    assert set(report) == {"combined", "random"}
    combined = report["combined"]
    # 100+ holds no injected pair, so it has no AUROC
    assert combined["auroc_by_caption_repeats"] == {"unique": 1.0, "2-9": 0.0, "10-99": 1.0}
    # boilerplate (0.9, 0.95) above every clean pair; within-category (0.2) above one of five
    assert combined["auroc_by_noise"] == {"boilerplate": 1.0, "within-category": 0.2}
    assert combined["auroc"] == pytest.approx(0.7333, abs=1e-4) and combined["positives"] == 3
    assert report["random"]["auroc_by_caption_repeats"]["2-9"] == 0.0


def test_detection_without_noise_types_reports_repeat_strata_only():
    frame = detection_frame().drop(columns="noise")
    entry = detection_report(frame, top_frac=0.25)["combined"]
    assert "auroc_by_noise" not in entry and set(entry["auroc_by_caption_repeats"]) == {"unique", "2-9", "10-99"}
    assert detection_report(frame.assign(injected=False), top_frac=0.25) == {}
