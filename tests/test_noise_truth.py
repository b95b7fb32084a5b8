"""Simulated noise leaves nothing to restore: a swap replaces every field a strategy may read, and the
truth fields (dataio.truth) change no strategy's and no ranking's output.

Rows are url-list rows of synthetic shapes (colour, shape, ... attributes) given web-like title,
description and keywords, so both sources' fields are covered; datasets are written as one hand-made
webdataset shard, which is much quicker than a demo build through img2dataset.
"""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from curate.assessment import assess
from curate.flagging import build_scores_table, reasons, select_flagged
from curate.rankings import DEFAULT_RANKING, RANKINGS
from dataio.errors import UsageError
from dataio.manifest import read_manifest
from dataio.reader import Sample, open_dataset
from dataio.truth import TRUTH_FIELDS, without_truth
from demo.build import BOILERPLATE_CAPTIONS, IMAGE_FIELDS, NOISE_TYPES, caption_bearing, inject_swaps_into
from demo.staging import row_for
from demo.synthetic import make_item
from mitigation.base import Options
from mitigation.multi_caption import gather_captions
from mitigation.strategies import STRATEGIES, mitigate
from tar_files import write_tar
from train.data import table_from_tensors

N = 60
RATE = 0.1


def web_like_rows() -> list:
    """Synthetic shapes with a title, description and keywords unique to each row (keywords shown in the captions)."""
    rows = []
    for i in range(N):
        row = row_for(make_item(i, seed=0))
        row.pop("url_path")
        # as read back from a built folder (bench/detection.py injects so): img2dataset's download record
        row.update(key=f"{i:09d}", status="success", width=64, sha256=f"{i:064x}")
        row.update(title=f"{row['shape'].title()} drawing number {i}", description=f"drawn by hand, item {i}",
                   keywords=[row["color"], row["shape"], f"kw{i}"])
        rows.append(row)
    return rows


def readable_texts(row: dict) -> set:
    """Every text a strategy could read from the row: all fields but the image's own and the truth."""
    texts = set()
    for name in caption_bearing(row):
        value = row[name]
        texts.update(str(v) for v in value) if isinstance(value, list) else texts.add(str(value))
    return texts


def injected_rows(noise: str) -> tuple:
    """(rows after injection, the same rows before it, by source_id)."""
    rows = web_like_rows()
    before = {row["source_id"]: copy.deepcopy(row) for row in rows}
    assert inject_swaps_into(rows, RATE, seed=1, noise=noise) == round(RATE * N)
    return rows, before


@pytest.mark.parametrize("noise", list(NOISE_TYPES))
def test_a_swap_replaces_every_field_a_strategy_may_read(noise):
    rows, before = injected_rows(noise)
    for row in (r for r in rows if r["injected"]):
        own = before[row["source_id"]]
        assert {name: row[name] for name in IMAGE_FIELDS if name in row} == \
               {name: own[name] for name in IMAGE_FIELDS if name in own}
        assert row["original_caption"] == own["caption"]
        if noise == "boilerplate":
            assert row["caption"] in BOILERPLATE_CAPTIONS and row["captions"] == [row["caption"]]
            assert all(row[name] is None for name in caption_bearing(own) if name not in ("caption", "captions"))
        else:
            donor = before[row["swapped_from"]]
            assert {name: row[name] for name in caption_bearing(own)} == {name: donor[name] for name in caption_bearing(donor)}
        # the row's own title, description and keywords are unique to it: none may be left anywhere
        own_unique = {own["title"], own["description"], own["keywords"][-1]}
        assert not any(text in readable for text in own_unique for readable in readable_texts(row))


@pytest.mark.parametrize("noise", list(NOISE_TYPES))
def test_multi_caption_over_every_field_restores_no_original_caption(noise):
    rows, before = injected_rows(noise)
    every_field = tuple(name for name in rows[0] if name not in IMAGE_FIELDS + TRUTH_FIELDS)
    step = gather_captions(None, Options(caption_fields=every_field))
    for row in (r for r in rows if r["injected"]):
        own = before[row["source_id"]]
        decision = step.decide(Sample(row["source_id"], b"", "jpg", row["caption"], row["captions"], row, "00000"))
        gathered = decision.captions or row["captions"]
        assert not set(gathered) & {own["caption"], own["title"], own["description"]}


def test_multi_caption_refuses_a_truth_field_as_a_caption_field():
    with pytest.raises(UsageError, match="^--caption-fields original_caption: the ground truth"):
        gather_captions(None, Options(caption_fields=("title", "original_caption")))


def write_shard(rows: list, folder, keep_truth: bool):
    """One webdataset shard of the rows (tiny identical images), with or without the truth fields."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    members = []
    for i, row in enumerate(rows):
        key = f"{i:09d}"
        meta = dict(row, key=key, status="success")
        meta = meta if keep_truth else without_truth(meta)
        members += [(f"{key}.jpg", buffer.getvalue()), (f"{key}.txt", row["caption"].encode()),
                    (f"{key}.json", json.dumps(meta).encode())]
    folder.mkdir()
    write_tar(folder / "00000.tar", members)
    return folder


def mitigated(data, out, strategy: str, scores, caption_fields: tuple) -> tuple:
    options = {"remove": {"scores": str(scores), "count": 5, "by": "clipscore"},
               "multi-caption": {"caption_fields": caption_fields, "min_captions": 4},
               "text-aug": {"n_aug": 2}, "text-noise": {}, "image-aug": {}}[strategy]
    result = mitigate(data, strategy, out, progress=False, **options)
    samples = {s.key: (s.caption, s.captions, without_truth(s.meta)) for s in open_dataset(result.path).samples()}
    actions = read_manifest(result.path)[["key", "action"]].sort_values("key").to_dict("records")
    steps = [{k: v for k, v in step.items() if k != "options" or "scores" not in v} for step in result.recipe["strategies"]]
    return samples, actions, steps, result.recipe["training"]


@pytest.mark.parametrize("noise", list(NOISE_TYPES))
def test_every_strategy_gives_the_same_output_without_the_truth_fields(noise, tmp_path):
    rows, _ = injected_rows(noise)
    with_truth = write_shard(rows, tmp_path / "with", keep_truth=True)
    captions = {s.key: s.caption for s in open_dataset(with_truth).samples()}
    scores = tmp_path / "scores.parquet"  # with the data's captions, which mitigate checks the keys against
    keys = [f"{i:09d}" for i in range(N)]
    pd.DataFrame({"key": keys, "caption": [captions[k] for k in keys],
                  "clipscore": np.linspace(-1, 1, N)}).to_parquet(scores)
    without = write_shard(rows, tmp_path / "without", keep_truth=False)
    assert "injected" in next(open_dataset(with_truth).samples()).meta
    assert "injected" not in next(open_dataset(without).samples()).meta
    every_field = tuple(name for name in rows[0] if name not in IMAGE_FIELDS + TRUTH_FIELDS)
    for strategy in STRATEGIES:
        assert mitigated(with_truth, tmp_path / f"a-{strategy}", strategy, scores, every_field) == \
               mitigated(without, tmp_path / f"b-{strategy}", strategy, scores, every_field), strategy


@pytest.mark.parametrize("noise", list(NOISE_TYPES))
def test_every_ranking_gives_the_same_order_without_the_truth_fields(noise):
    rows, _ = injected_rows(noise)
    keys = [row["source_id"] for row in rows]
    rng = np.random.default_rng(0)
    measures = pd.DataFrame({"key": keys, "clipmem_raw": rng.random(N), "align_g": rng.random(N),
                             "neighbour": rng.random(N), "align_csls": rng.random(N)})
    csl = rng.random(N)

    def frame(meta: list) -> pd.DataFrame:
        table = table_from_tensors(keys, torch.zeros(N, 3, 8, 8, dtype=torch.uint8), [r["captions"] for r in rows], meta)
        scored = build_scores_table(table, keys, measures, csl, "combined", seed=0)
        scored["flagged"] = select_flagged(scored, 0.1, None)
        scored["reasons"] = reasons(scored)
        return scored

    truthful, blind = frame(rows), frame([without_truth(r) for r in rows])
    assert truthful["injected"].sum() == round(RATE * N) and "injected" not in blind
    columns = [f"rank_{name}" for name in RANKINGS if f"rank_{name}" in truthful] + ["score", "flagged", "reasons"]
    assert f"rank_{DEFAULT_RANKING}" in columns
    pd.testing.assert_frame_equal(truthful[columns], blind[columns])
    # the learned ranking, which only canaries can fit: the same rows stand in for them in both tables
    spec = pd.DataFrame({"key": keys[-20:], "kind": "random-caption"})
    learned = [assess(f.copy(), spec, "learned", seed=0).frame["rank_learned"] for f in (truthful, blind)]
    pd.testing.assert_series_equal(learned[0], learned[1])
