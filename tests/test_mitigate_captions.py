"""`text-aug` and `multi-caption`: captions land in the json `captions` list, the .txt stays the primary."""

import pytest
from test_text_aug import tiny_t5_dir  # noqa: F401  (a fixture: a tiny random T5 saved locally)

from dataio.manifest import read_manifest
from dataio.reader import open_dataset
from dataio.writer import Keep, write_dataset
from mitigation.strategies import mitigate
from train.eda import augment_caption

N = 24


@pytest.fixture(scope="module")
def data(make_synthetic):
    return make_synthetic(n=N, fmt="webdataset", inject=0.0, seed=8)


def by_key(path) -> dict:
    return {s.key: s for s in open_dataset(path).samples()}


def run(data, out, strategy, **options):
    return mitigate(data, strategy, out, progress=False, **options)


def test_text_aug_alone_trains_on_the_primary_caption_and_its_augmentations(data, tmp_path):
    result = run(data, tmp_path / "aug", "text-aug", n_aug=3, seed=1)
    before, after = by_key(data), by_key(result.path)
    assert before.keys() == after.keys()
    assert sum(len(s.captions) > 1 for s in before.values()) == N  # the data's own phrasings, which must go
    for key, sample in after.items():
        original = before[key]
        assert sample.caption == original.caption and sample.captions[0] == original.caption
        added = sample.captions[1:]
        assert added == [c for c in augment_caption(original.caption, n=3, seed=1, key=key) if c != original.caption]
        assert 1 <= len(added) <= 3
        assert sample.image == original.image
    assert result.counts == {"kept": 0, "changed": N, "removed": 0, "unreadable": 0}
    assert set(read_manifest(result.path).action) == {"changed"}
    assert result.recipe["training"]["caption_sampling"] is True
    step = result.recipe["strategies"][0]
    assert step["options"]["added_to"] == "primary caption only"
    assert step["stats"]["captions_dropped"] == sum(len(s.captions) - 1 for s in before.values())


def test_text_aug_repeats_per_seed_and_varies_with_it(data, tmp_path):
    first = by_key(run(data, tmp_path / "a", "text-aug", seed=7).path)
    again = by_key(run(data, tmp_path / "b", "text-aug", seed=7).path)
    other = by_key(run(data, tmp_path / "c", "text-aug", seed=8).path)
    assert {k: s.captions for k, s in first.items()} == {k: s.captions for k, s in again.items()}
    assert {k: s.captions for k, s in first.items()} != {k: s.captions for k, s in other.items()}


def test_text_aug_adds_paraphrases_from_a_local_model(data, tmp_path, tiny_t5_dir):  # noqa: F811
    result = run(data, tmp_path / "para", "text-aug", n_aug=1, paraphrase_model=str(tiny_t5_dir), paraphrase_n=2)
    before, after = by_key(data), by_key(result.path)
    eda_only = by_key(run(data, tmp_path / "eda", "text-aug", n_aug=1).path)
    assert sum(len(s.captions) for s in after.values()) > sum(len(s.captions) for s in eda_only.values())
    assert all(s.caption == before[k].caption for k, s in after.items())
    assert result.recipe["strategies"][0]["options"]["paraphrase_model"] == str(tiny_t5_dir)


@pytest.fixture(scope="module")
def data_with_fields(data, tmp_path_factory):
    """The synthetic set with web-like title / description / keywords fields and an alt-text column."""

    def add_fields(sample):
        shape = sample.meta["category"]
        return Keep(meta_update={"title": f"{shape.title()} Drawing", "description": "",
                                 "keywords": [shape, "clip art", "shape"], "alt_text": [f"a {shape}", f"{shape} icon"]})

    out = tmp_path_factory.mktemp("fields") / "with_fields"
    write_dataset(open_dataset(data), out, add_fields, progress=False)
    return out


def test_multi_caption_collects_title_description_keywords(data_with_fields, tmp_path):
    result = run(data_with_fields, tmp_path / "multi", "multi-caption")
    before, after = by_key(data_with_fields), by_key(result.path)
    for key, sample in after.items():
        shape = sample.meta["category"]
        assert sample.caption == before[key].caption
        assert sample.captions == before[key].captions + [f"{shape.title()} Drawing", f"{shape}, clip art, shape"]
    assert result.recipe["training"]["caption_sampling"] is True
    assert result.counts["changed"] == N


def test_multi_caption_reads_named_fields_and_fills_up_with_eda(data_with_fields, tmp_path):
    result = run(data_with_fields, tmp_path / "multi", "multi-caption", caption_fields=("alt_text",), min_captions=9)
    before = by_key(data_with_fields)
    for key, sample in by_key(result.path).items():
        shape = sample.meta["category"]
        assert f"a {shape}" in sample.captions and f"{shape} icon" in sample.captions
        assert len(sample.captions) == 9
        assert sample.captions[: len(before[key].captions)] == before[key].captions
    stats = result.recipe["strategies"][0]["stats"]
    assert stats["captions_from_fields"] == 4 * N and stats["captions_from_eda"] > 0


def test_multi_caption_run_twice_changes_nothing_the_second_time(data_with_fields, tmp_path):
    once = run(data_with_fields, tmp_path / "once", "multi-caption")
    twice = run(once.path, tmp_path / "twice", "multi-caption")
    assert twice.counts["kept"] == N and twice.counts["changed"] == 0
    assert {k: s.captions for k, s in by_key(twice.path).items()} == {k: s.captions for k, s in by_key(once.path).items()}


def test_text_aug_after_multi_caption_appends_to_the_gathered_captions(data_with_fields, tmp_path):
    result = run(data_with_fields, tmp_path / "both", "text-aug,multi-caption", n_aug=2)
    before = by_key(data_with_fields)
    for key, sample in by_key(result.path).items():
        shape = sample.meta["category"]
        gathered = before[key].captions + [f"{shape.title()} Drawing", f"{shape}, clip art, shape"]
        assert sample.captions[: len(gathered)] == gathered
        assert sample.captions[len(gathered):] == [c for c in augment_caption(sample.caption, n=2, seed=0, key=key)
                                                   if c not in gathered]
    assert [s["name"] for s in result.recipe["strategies"]] == ["multi-caption", "text-aug"]
    assert result.recipe["strategies"][1]["options"]["added_to"] == "gathered captions"


def test_text_aug_keeps_the_data_own_captions_after_a_multi_caption_that_adds_none(data, tmp_path):
    """laion_subset's json already lists title, keywords and description: multi-caption leaves each sample as
    it is, and text-aug after it must still keep those captions (alone, it drops them)."""
    before = by_key(data)
    in_one_run = by_key(run(data, tmp_path / "both", "multi-caption,text-aug", n_aug=2).path)
    gathered = run(data, tmp_path / "multi", "multi-caption")
    assert gathered.counts["changed"] == 0
    chained = by_key(run(gathered.path, tmp_path / "chained", "text-aug", n_aug=2).path)
    alone = by_key(run(data, tmp_path / "alone", "text-aug", n_aug=2).path)
    for key, original in before.items():
        assert in_one_run[key].captions[: len(original.captions)] == original.captions
        assert chained[key].captions == in_one_run[key].captions
        assert len(in_one_run[key].captions) > len(original.captions)
        assert not set(alone[key].captions) & set(original.captions[1:])
