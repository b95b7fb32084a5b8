"""Offline WordNet loading: Debian's files copied into an nltk data folder, or nltk's own data."""

from pathlib import Path

import nltk
import pytest
from nltk.corpus.util import LazyCorpusLoader

from dataio.errors import DataError
from train.wordnet import (
    DEBIAN_WORDNET_DIR,
    LEXNAMES,
    REQUIRED_FILES,
    install_debian_wordnet,
    lexnames_text,
    load_wordnet,
)


@pytest.fixture
def no_nltk_data(tmp_path, monkeypatch):
    """nltk.data.path with no WordNet on it, restored after the test."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty_nltk_data")])
    return tmp_path


def _reset_global_wordnet():
    if not isinstance(nltk.corpus.wordnet, LazyCorpusLoader):
        nltk.corpus.wordnet._unload()


def test_lexnames_table_matches_wordnet_layout():
    lines = [line.split("\t") for line in lexnames_text().splitlines()]
    assert len(lines) == len(LEXNAMES) == 45
    assert [int(number) for number, _, _ in lines] == list(range(45))
    category = {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}
    assert all(cat == category[name.split(".")[0]] for _, name, cat in lines)
    assert lines[0] == ["00", "adj.all", "3"]
    assert lines[5] == ["05", "noun.animal", "1"]
    assert lines[44] == ["44", "adj.ppl", "3"]


def test_debian_files_are_copied_into_a_fresh_nltk_dir_and_load(no_nltk_data):
    cache_root = no_nltk_data / "nltk_data"
    wordnet = load_wordnet.__wrapped__(cache_root=cache_root)

    wordnet_dir = cache_root / "corpora" / "wordnet"
    for name in REQUIRED_FILES:
        copied = wordnet_dir / name
        assert copied.is_file() and not copied.is_symlink()
        assert copied.stat().st_size == (DEBIAN_WORDNET_DIR / name).stat().st_size
    assert (wordnet_dir / "lexnames").read_text() == lexnames_text()
    assert [p.name for p in wordnet_dir.parent.iterdir()] == ["wordnet"]  # no staging left
    assert str(cache_root) in nltk.data.path
    assert Path(str(wordnet.root)) == wordnet_dir
    dog = wordnet.synsets("dog")[0]
    assert dog.name() == "dog.n.01" and dog.lexname() == "noun.animal"


def test_complete_copy_is_reused_without_the_debian_files(tmp_path):
    first = install_debian_wordnet(DEBIAN_WORDNET_DIR, tmp_path)
    stamp = (first / "data.noun").stat().st_mtime_ns
    again = install_debian_wordnet(tmp_path / "no_debian_here", tmp_path)
    assert again == first
    assert (again / "data.noun").stat().st_mtime_ns == stamp


def test_incomplete_leftover_is_replaced(tmp_path):
    leftover = tmp_path / "corpora" / "wordnet"
    leftover.mkdir(parents=True)
    (leftover / "lexnames").write_text("truncated")
    install_debian_wordnet(DEBIAN_WORDNET_DIR, tmp_path)
    assert (leftover / "lexnames").read_text() == lexnames_text()
    assert (leftover / "data.noun").is_file()
    assert sorted(p.name for p in leftover.parent.iterdir()) == ["wordnet"]


def test_nltk_own_data_is_preferred(tmp_path, monkeypatch):
    install_debian_wordnet(DEBIAN_WORDNET_DIR, tmp_path / "own")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "own")])
    _reset_global_wordnet()
    try:
        wordnet = load_wordnet.__wrapped__(debian_dir=tmp_path / "no_debian", cache_root=tmp_path)
        assert wordnet is nltk.corpus.wordnet
        assert Path(str(wordnet.root)) == tmp_path / "own" / "corpora" / "wordnet"
        assert wordnet.synsets("cat")[0].name() == "cat.n.01"
    finally:
        _reset_global_wordnet()


def test_missing_wordnet_names_both_fixes(no_nltk_data):
    with pytest.raises(DataError) as caught:
        load_wordnet.__wrapped__(debian_dir=no_nltk_data / "none", cache_root=no_nltk_data / "c")
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install" in message and "wordnet-base" in message
    assert "wordnet-sense-index" in message
    assert "nltk.download('wordnet')" in message
    assert not (no_nltk_data / "c").exists()


def test_debian_dir_lacking_files_is_named(no_nltk_data):
    partial = no_nltk_data / "partial_debian"
    partial.mkdir()
    (partial / "index.noun").write_text("")
    with pytest.raises(DataError, match="partial_debian lacks .*data.noun"):
        load_wordnet.__wrapped__(debian_dir=partial, cache_root=no_nltk_data / "c")
