"""`remove`: the removed keys are exactly the top-ranked ones of a scores table written here by hand."""

import random
import shutil

import pandas as pd
import pytest

from curate.rankings import DEFAULT_RANKING, RANKINGS
from dataio.errors import DataError, UsageError
from dataio.manifest import read_manifest
from dataio.paths import scores_path as default_scores_path
from dataio.reader import open_dataset
from mitigation.strategies import mitigate

N = 24


@pytest.fixture(scope="module")
def data(make_synthetic, tmp_path_factory):
    """A private copy: the default scores file goes beside the dataset, and the fixture's folder is shared."""
    copy = tmp_path_factory.mktemp("remove") / "shapes"
    shutil.copytree(make_synthetic(n=N, fmt="webdataset", inject=0.0, seed=8), copy)
    return copy


def input_keys(path) -> list:
    return sorted(s.key for s in open_dataset(path).samples())


DEFAULT_COLUMN = RANKINGS[DEFAULT_RANKING].column


def data_captions(data_dir) -> dict:
    return {s.key: s.caption for s in open_dataset(data_dir).samples(verify_images=False)}


def write_scores(data_dir, keys, path=None) -> pd.DataFrame:
    """Distinct known scores per column, each column ranking the keys differently; captions as flag records
    them (the data's, so the key check passes; a key the data lacks gets one of its own)."""
    rng = random.Random(0)
    captions = data_captions(data_dir)
    columns = {}
    for name in ("rank_combined", "rank_combined-neighbour", "rank_combined-csls", "clipmem", "clipscore", "csl",
                 "random"):
        values = [round(v / len(keys), 4) for v in range(len(keys))]
        rng.shuffle(values)
        columns[name] = values
    table = pd.DataFrame({"key": keys, "caption": [captions.get(k, f"caption of {k}") for k in keys], **columns, "clipmem_raw": columns["clipmem"],
                          "fold": 0, "flagged": False, "reasons": ""})
    path = path or default_scores_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path)
    return table


@pytest.fixture(scope="module")
def scores(data):
    return write_scores(data, input_keys(data))


def removed_keys(out) -> set:
    manifest = read_manifest(out)
    return set(manifest.key[manifest.action == "removed"])


def run_remove(data, tmp_path, **options):
    return mitigate(data, "remove", tmp_path / "out", progress=False, **options)


def expected_top(scores, column, k=None, threshold=None, ascending=False) -> set:
    pairs = sorted(zip(scores[column], scores.key), reverse=not ascending)
    if threshold is not None:
        return {key for value, key in pairs if (value <= threshold if ascending else value >= threshold)}
    return {key for _, key in pairs[:k]}


@pytest.mark.parametrize("by,column", [("combined", "rank_combined"), ("default", DEFAULT_COLUMN), ("combined-neighbour", "rank_combined-neighbour"), ("combined-csls", "rank_combined-csls"), ("clipmem", "clipmem"), ("csl", "csl"), ("random", "random")])
def test_count_removes_the_highest_scores_of_the_chosen_column(data, scores, tmp_path, by, column):
    result = run_remove(data, tmp_path, count=5, by=by)
    assert removed_keys(result.path) == expected_top(scores, column, k=5)
    assert result.counts["removed"] == 5


def test_clipscore_removes_the_lowest_alignment_first(data, scores, tmp_path):
    result = run_remove(data, tmp_path, count=4, by="clipscore")
    assert removed_keys(result.path) == expected_top(scores, "clipscore", k=4, ascending=True)
    assert removed_keys(result.path) != expected_top(scores, "clipscore", k=4)


def test_frac_removes_that_share_of_the_data(data, scores, tmp_path):
    result = run_remove(data, tmp_path, frac=0.2, by="clipmem")
    assert removed_keys(result.path) == expected_top(scores, "clipmem", k=round(0.2 * N))


@pytest.mark.parametrize("by,column,ascending", [("csl", "csl", False), ("clipscore", "clipscore", True)])
def test_threshold_removes_every_sample_beyond_it(data, scores, tmp_path, by, column, ascending):
    result = run_remove(data, tmp_path, threshold=0.5, by=by)
    expected = expected_top(scores, column, threshold=0.5, ascending=ascending)
    assert 0 < len(expected) < N
    assert removed_keys(result.path) == expected


def test_manifest_adds_up_and_says_why(data, scores, tmp_path):
    result = run_remove(data, tmp_path, count=3, by="clipmem")
    manifest = read_manifest(result.path)
    assert sorted(manifest.key) == input_keys(data)
    assert sum(result.counts.values()) == N
    top_key = max(zip(scores.clipmem, scores.key))[1]
    reason = manifest.set_index("key").reason[top_key]
    assert "top 3 by clipmem" in reason and f"{scores.clipmem.max():.4g}" in reason
    assert set(input_keys(result.path)) == set(input_keys(data)) - removed_keys(result.path)
    assert result.recipe["strategies"][0]["options"]["by"] == "clipmem"


def test_scores_path_can_be_given(data, scores, tmp_path):
    elsewhere = tmp_path / "elsewhere.parquet"
    other = write_scores(data, input_keys(data), path=elsewhere)
    other[DEFAULT_COLUMN] = [1.0 if i == 7 else 0.0 for i in range(N)]
    other.to_parquet(elsewhere)
    result = run_remove(data, tmp_path, count=1, scores=str(elsewhere))
    assert removed_keys(result.path) == {other.key[7]}


def test_missing_scores_file_says_to_run_flag(data, tmp_path):
    fresh = tmp_path / "unflagged"
    shutil.copytree(data, fresh)
    with pytest.raises(UsageError, match=r"scores\.parquet.*python cli\.py flag --data"):
        run_remove(fresh, tmp_path, count=1)


def test_scores_of_another_dataset_are_refused(data, tmp_path):
    foreign = tmp_path / "foreign.parquet"
    write_scores(data, [f"other{i}" for i in range(N)], path=foreign)
    with pytest.raises(DataError, match="another dataset"):
        run_remove(data, tmp_path, count=1, scores=str(foreign))


def test_a_few_unscored_keys_are_an_error_naming_the_key(data, tmp_path):
    partial = tmp_path / "partial.parquet"
    keys = input_keys(data)
    write_scores(data, keys[1:], path=partial)
    with pytest.raises(DataError, match=f"no score for key {keys[0]}"):
        run_remove(data, tmp_path, count=1, scores=str(partial))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options", [{}, {"count": 1, "frac": 0.1}, {"count": -1}, {"frac": 1.5}, {"count": 1, "by": "loss"}])
def test_bad_amounts_are_usage_errors(data, scores, tmp_path, options):
    with pytest.raises(UsageError):
        run_remove(data, tmp_path, **options)


def test_remove_combines_with_text_aug_and_runs_first(data, scores, tmp_path):
    result = mitigate(data, "text-aug,remove", progress=False, count=3, n_aug=1)
    assert result.path.name == "shapes.text-aug+remove"
    assert result.counts["removed"] == 3 and result.counts["changed"] == N - 3
    assert removed_keys(result.path) == expected_top(scores, DEFAULT_COLUMN, k=3)
    assert [s["name"] for s in result.recipe["strategies"]] == ["remove", "text-aug"]
    assert result.recipe["strategies"][1]["stats"]["captions_added"] == N - 3


def test_no_verify_copies_samples_unread_and_writes_the_same_folder(data, scores, tmp_path, monkeypatch):
    verified = run_remove(data, tmp_path / "verified", count=5)
    from dataio import formats

    read_tar_shard = formats.read_tar_shard

    def reader_not_expected_in_the_writer(root, shard, keep_stored=False):
        # the writer's block-by-block path asks for members as stored; other readers (kept_keys.npy) do not
        assert not keep_stored, "remove --no-verify read the samples instead of copying byte ranges"
        return read_tar_shard(root, shard, keep_stored)

    monkeypatch.setattr(formats, "read_tar_shard", reader_not_expected_in_the_writer)
    unread = run_remove(data, tmp_path / "unread", count=5, verify_images=False)
    assert unread.counts == verified.counts and unread.counts["removed"] == 5
    assert removed_keys(unread.path) == expected_top(scores, DEFAULT_COLUMN, k=5)
    for shard in sorted(verified.path.glob("*.tar")):
        assert (unread.path / shard.name).read_bytes() == shard.read_bytes()
    assert read_manifest(unread.path).equals(read_manifest(verified.path))


def test_no_verify_keeps_and_counts_a_key_without_a_score(data, tmp_path):
    """Copied unread, a sample flag could not score cannot be told from one flag could not read: kept,
    counted in the step's stats, named in the manifest (a verified run refuses it, test above)."""
    partial = tmp_path / "partial.parquet"
    keys = input_keys(data)
    write_scores(data, keys[1:], path=partial)
    result = run_remove(data, tmp_path, count=1, scores=str(partial), verify_images=False)
    assert result.recipe["strategies"][0]["stats"] == {"removed": 1, "kept_unscored": 1}
    manifest = read_manifest(result.path).set_index("key")
    assert manifest.action[keys[0]] == "kept" and "no flag score" in manifest.reason[keys[0]]
