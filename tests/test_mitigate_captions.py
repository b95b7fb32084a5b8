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


def test_text_aug_appends_augmentations_and_keeps_the_primary_caption(data, tmp_path):
    result = run(data, tmp_path / "aug", "text-aug", n_aug=3, seed=1)
    before, after = by_key(data), by_key(result.path)
    assert before.keys() == after.keys()
    for key, sample in after.items():
        original = before[key]
        assert sample.caption == original.caption
        assert sample.captions[: len(original.captions)] == original.captions
        added = sample.captions[len(original.captions):]
        assert added == [c for c in augment_caption(original.caption, n=3, seed=1, key=key) if c not in original.captions]
        assert 1 <= len(added) <= 3
        assert sample.image == original.image
    assert result.counts == {"kept": 0, "changed": N, "removed": 0, "unreadable": 0}
    assert set(read_manifest(result.path).action) == {"changed"}
    assert result.recipe["training"]["caption_sampling"] is True


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


def test_combined_strategies_apply_each(data_with_fields, tmp_path):
    result = run(data_with_fields, tmp_path / "both", "text-aug,multi-caption", n_aug=2)
    before = by_key(data_with_fields)
    for key, sample in by_key(result.path).items():
        assert f"{sample.meta['category'].title()} Drawing" in sample.captions
        assert len(sample.captions) > len(before[key].captions) + 1
    assert [s["name"] for s in result.recipe["strategies"]] == ["multi-caption", "text-aug"]
