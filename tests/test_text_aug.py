"""EDA caption augmentation: WordNet synonyms, insertion, swap, deletion, determinism."""

import subprocess
import sys
from collections import Counter

import pytest

from dataio.errors import UsageError
from train.eda import (
    STOP_WORDS,
    augment_caption,
    augment_captions,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    synonyms,
    tokenize,
)
from train.wordnet import load_wordnet

WEB_CAPTION = "Etiquette Icons. icon, sign, etiquette"
LONG_CAPTION = "A small brown dog sleeps on the red sofa near a big window. pet, animal, home"


def _lemmas(word):
    return {
        name.replace("_", " ").lower()
        for synset in load_wordnet().synsets(word)
        for name in synset.lemma_names()
    }


def _cores(text):
    return [token.core for token in tokenize(text) if token.core]


def test_synonyms_are_wordnet_lemmas_of_the_word():
    dog_synonyms = synonyms("Dog")
    assert dog_synonyms and set(dog_synonyms) <= _lemmas("dog") - {"dog"}
    assert synonyms("the") == () and synonyms("2004") == () and synonyms("x") == ()


@pytest.mark.parametrize("seed", range(8))
def test_replacement_takes_a_synonym_and_keeps_stop_words(seed):
    out = synonym_replacement("the Dog", seed=seed)
    first, replaced = out.split(" ", 1)
    assert first == "the"
    assert replaced.lower() in _lemmas("dog") - {"dog"}
    assert replaced[0].isupper()  # casing of the replaced word survives


def test_replacement_changes_alpha_share_of_words():
    words = "dog cat house tree car river mountain flower bird table".split()
    out = synonym_replacement(" ".join(words), alpha=0.3, seed=3)
    changed = [w for w in words if w not in out.split()]
    assert len(changed) == 3


def test_insertion_adds_synonyms_and_keeps_the_caption_in_order():
    caption = "red dog on a sofa"
    for seed in range(5):
        out = random_insertion(caption, alpha=0.4, seed=seed).split()
        remaining = iter(out)
        assert all(word in remaining for word in caption.split())  # original is a subsequence
        inserted = Counter(out) - Counter(caption.split())
        candidates = synonyms("red") + synonyms("dog") + synonyms("sofa")
        assert sum(inserted.values()) >= 2  # two insertions; a synonym may be "chase after"
        for word in inserted:
            assert any(word in synonym.split() for synonym in candidates)


@pytest.mark.parametrize("seed", range(10))
def test_swap_keeps_words_and_punctuation_positions(seed):
    out = random_swap(WEB_CAPTION, alpha=0.5, seed=seed)
    assert Counter(_cores(out)) == Counter(_cores(WEB_CAPTION))
    punctuation = [(t.prefix, t.suffix) for t in tokenize(out)]
    assert punctuation == [(t.prefix, t.suffix) for t in tokenize(WEB_CAPTION)]


@pytest.mark.parametrize("caption", ["dog", "Dog.", "a red dog", WEB_CAPTION, "- dog -"])
def test_deletion_never_empties_a_caption(caption):
    for seed in range(30):
        out = random_deletion(caption, p=1.0, seed=seed)
        assert _cores(out), (caption, seed, out)
    assert random_deletion("dog", p=0.9, seed=1) == "dog"


def test_deletion_keeps_remaining_words_in_order_and_tidy():
    for seed in range(40):
        out = random_deletion(LONG_CAPTION, p=0.5, seed=seed)
        remaining = iter(_cores(LONG_CAPTION))
        assert all(core in remaining for core in _cores(out))
        assert out and out[-1] not in ",;:"


def test_deleted_word_hands_its_period_to_the_previous_word():
    outcomes = {random_deletion("Etiquette Icons. icon", p=0.34, seed=s) for s in range(60)}
    assert "Etiquette. icon" in outcomes
    assert "Etiquette icon" not in outcomes


def test_augment_caption_gives_n_distinct_new_captions():
    out = augment_caption(LONG_CAPTION, n=4, key="000001")
    assert len(out) == 4 and len(set(out)) == 4
    assert all(caption and caption != LONG_CAPTION for caption in out)


def test_augment_caption_with_few_variants_returns_fewer_not_duplicates():
    assert augment_caption("2004", n=4) == []  # no synonyms, nothing to swap or delete
    assert augment_caption("   ") == []
    assert augment_caption(WEB_CAPTION, alpha_sr=0, alpha_ri=0, alpha_rs=0, p_rd=0) == []
    out = augment_caption("Dino. dinosaur", n=4, key="k")
    assert 0 < len(out) < 4 and len(set(out)) == len(out)


def test_augment_is_deterministic_per_seed_and_key():
    first = augment_caption(LONG_CAPTION, seed=7, key="000042")
    assert augment_caption(LONG_CAPTION, seed=7, key="000042") == first
    assert augment_caption(LONG_CAPTION, seed=8, key="000042") != first
    assert augment_caption(LONG_CAPTION, seed=7, key="000043") != first


def test_determinism_survives_python_hash_randomization():
    code = (
        "from train.eda import random_swap, random_deletion;"
        f"print(random_swap({LONG_CAPTION!r}, seed=5, key='k'));"
        f"print(random_deletion({LONG_CAPTION!r}, p=0.3, seed=5, key='k'))"
    )
    here = [random_swap(LONG_CAPTION, seed=5, key="k"),
            random_deletion(LONG_CAPTION, p=0.3, seed=5, key="k")]
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": hash_seed, "PYTHONPATH": "."},
        )
        assert result.stdout.splitlines() == here


def test_augment_captions_seeds_each_sample_by_key():
    captions = [LONG_CAPTION, LONG_CAPTION, WEB_CAPTION]
    keys = ["000001", "000002", "000003"]
    out = augment_captions(captions, keys, n=3, seed=1)
    assert out == [augment_caption(c, n=3, seed=1, key=k) for c, k in zip(captions, keys)]
    assert out[0] != out[1]  # same caption, different sample
    with pytest.raises(UsageError, match="2 captions but 1 keys"):
        augment_captions(["a", "b"], ["k"])


def test_rates_outside_zero_one_are_usage_errors():
    with pytest.raises(UsageError, match="p_rd"):
        augment_caption(WEB_CAPTION, p_rd=1.5)
    with pytest.raises(UsageError, match="alpha_sr"):
        synonym_replacement(WEB_CAPTION, alpha=-0.1)


def test_stop_words_are_lower_case_function_words():
    assert {"the", "a", "of", "and"} <= STOP_WORDS
    assert all(word == word.lower() for word in STOP_WORDS)
    assert not STOP_WORDS & {"dog", "icon", "sign"}


# Paraphrasing with a local seq2seq model: a tiny random T5 with a byte tokenizer stands in.


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer), d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1,
        decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_paraphrase_returns_n_non_empty_strings_per_caption(tiny_t5_dir):
    import torch

    from mitigation.paraphrase import paraphrase_captions

    captions = ["a red dog", WEB_CAPTION, "card"]
    rng_before = torch.get_rng_state()
    out = paraphrase_captions(captions, tiny_t5_dir, n=2, batch_size=2, max_new_tokens=8)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert len(out) == 3
    assert all(len(paraphrases) == 2 for paraphrases in out)
    assert all(isinstance(p, str) and p.strip() for paraphrases in out for p in paraphrases)
    assert any(p != c for c, paraphrases in zip(captions, out) for p in paraphrases)
    again = paraphrase_captions(captions, tiny_t5_dir, n=2, batch_size=2, max_new_tokens=8)
    assert again == out


def test_paraphrase_model_folder_errors(tmp_path):
    from dataio.errors import DataError
    from mitigation.paraphrase import paraphrase_captions

    with pytest.raises(DataError, match="does not exist"):
        paraphrase_captions(["a dog"], tmp_path / "missing")
    with pytest.raises(DataError, match="no config.json"):
        paraphrase_captions(["a dog"], tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "not-a-model"}')
    with pytest.raises(DataError, match="cannot load a seq2seq model"):
        paraphrase_captions(["a dog"], tmp_path)
