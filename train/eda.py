"""EDA caption augmentation (Wei & Zou 2019): synonym replacement, random insertion, swap, deletion.

Web captions keep their shape: a caption is split on whitespace into tokens, each token into
leading punctuation, a core and trailing punctuation ("(Wed" -> "(", "Wed", ""). Operations
change cores and leave punctuation in place, so "Etiquette Icons. icon, sign" can become
"Etiquette Icons. picture, sign". Replacements copy the casing of the word they replace.
Only alphabetic cores outside STOP_WORDS are looked up in WordNet.

Every result is a function of (caption, seed, key): the random generator is seeded from a
blake2b hash of (seed, key), never from Python's salted ``hash()``, so runs repeat across
processes and two samples with the same caption but different keys get different augmentations.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from tqdm import tqdm

from dataio.errors import UsageError
from train.wordnet import load_wordnet

# Function words that carry no content; replacing them makes noise, not paraphrases.
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves
    out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves
    """.split()
)

_TOKEN_PARTS = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


class Token(NamedTuple):
    prefix: str
    core: str
    suffix: str


Operation = Callable[[list[Token], float, random.Random], list[Token]]


def stable_rng(seed: int, key: str) -> random.Random:
    """A generator seeded from (seed, key), the same in every process.

    >>> stable_rng(0, "000001").random() == stable_rng(0, "000001").random()
    True
    >>> stable_rng(0, "000001").random() == stable_rng(0, "000002").random()
    False
    """
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode("utf-8"), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def tokenize(caption: str) -> list[Token]:
    """Whitespace tokens, each split into punctuation prefix, core and punctuation suffix.

    >>> tokenize("Icons. (Wed")
    [Token(prefix='', core='Icons', suffix='.'), Token(prefix='(', core='Wed', suffix='')]
    """
    return [Token(*_TOKEN_PARTS.match(piece).groups()) for piece in caption.split()]


def detokenize(tokens: Sequence[Token]) -> str:
    """Join tokens back with single spaces.

    >>> detokenize(tokenize("Etiquette  Icons. icon,\\tsign"))
    'Etiquette Icons. icon, sign'
    """
    return " ".join(token.prefix + token.core + token.suffix for token in tokens)


@functools.lru_cache(maxsize=None)
def synonyms(word: str) -> tuple[str, ...]:
    """WordNet synonyms of ``word`` (lemmas of all its synsets), lower case, itself excluded.

    Multi-word lemmas come with spaces ("hot dog"). Stop words and non-alphabetic words
    have none. Cached, because web captions repeat the same words thousands of times.

    >>> "domestic dog" in synonyms("dog"), "dog" in synonyms("dog"), synonyms("the")
    (True, False, ())
    """
    word = word.lower()
    if len(word) < 2 or word in STOP_WORDS or not _WORD.fullmatch(word):
        return ()
    wordnet = load_wordnet()
    own_forms = {word} | {wordnet.morphy(word, pos) for pos in ("n", "v", "a", "r")}
    lemmas = dict.fromkeys(
        name.replace("_", " ").lower()
        for synset in wordnet.synsets(word)
        for name in synset.lemma_names()
    )
    return tuple(lemma for lemma in lemmas if lemma not in own_forms)


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _word_positions(tokens: Sequence[Token]) -> list[int]:
    return [i for i, token in enumerate(tokens) if token.core]


def _change_count(alpha: float, tokens: Sequence[Token]) -> int:
    """EDA's n = max(1, alpha * words); alpha 0 switches the operation off."""
    if alpha <= 0:
        return 0
    return max(1, int(alpha * len(_word_positions(tokens))))


def _replace_synonyms(tokens: list[Token], alpha: float, rng: random.Random) -> list[Token]:
    candidates = [i for i, token in enumerate(tokens) if synonyms(token.core)]
    rng.shuffle(candidates)
    for i in candidates[: _change_count(alpha, tokens)]:
        token = tokens[i]
        tokens[i] = token._replace(core=_match_case(token.core, rng.choice(synonyms(token.core))))
    return tokens


def _insert_synonyms(tokens: list[Token], alpha: float, rng: random.Random) -> list[Token]:
    sources = [token.core for token in tokens if synonyms(token.core)]
    if not sources:
        return tokens
    for _ in range(_change_count(alpha, tokens)):
        new_word = rng.choice(synonyms(rng.choice(sources)))
        tokens.insert(rng.randint(0, len(tokens)), Token("", new_word, ""))
    return tokens


def _swap_words(tokens: list[Token], alpha: float, rng: random.Random) -> list[Token]:
    positions = _word_positions(tokens)
    if len(positions) < 2:
        return tokens
    for _ in range(_change_count(alpha, tokens)):
        i, j = rng.sample(positions, 2)
        tokens[i], tokens[j] = (
            tokens[i]._replace(core=tokens[j].core),
            tokens[j]._replace(core=tokens[i].core),
        )
    return tokens


def _delete_words(tokens: list[Token], p: float, rng: random.Random) -> list[Token]:
    if len(tokens) <= 1 or p <= 0:
        return tokens
    keep = [rng.random() >= p for _ in tokens]
    positions = _word_positions(tokens)
    if not any(keep[i] for i in positions):
        # EDA keeps one random word when all went; a caption of bare punctuation is no caption.
        keep[rng.choice(positions or range(len(tokens)))] = True
    return _carry_punctuation(tokens, keep)


def _carry_punctuation(tokens: list[Token], keep: list[bool]) -> list[Token]:
    """Drop unkept tokens but hand their punctuation to the kept neighbours.

    Deleting "Icons." from "Etiquette Icons. icon" gives "Etiquette. icon", not "Etiquette
    icon"; deleting "(B" keeps the parenthesis balanced. A separator left dangling at the end
    ("card, bordered" -> "card,") is trimmed.
    """
    kept: list[Token] = []
    pending_prefix = ""
    for token, is_kept in zip(tokens, keep):
        if is_kept:
            kept.append(token._replace(prefix=pending_prefix + token.prefix))
            pending_prefix = ""
        else:
            pending_prefix += token.prefix
            if token.suffix and kept:
                kept[-1] = kept[-1]._replace(suffix=token.suffix)
    last = kept[-1]
    kept[-1] = last._replace(suffix=last.suffix.rstrip(",;:"))
    return kept


def _check_rate(name: str, rate: float) -> None:
    if not 0 <= rate <= 1:
        raise UsageError(f"{name} must be between 0 and 1, got {rate}")


def _apply(operation: Operation, caption: str, rate: float, name: str, seed: int, key: str) -> str:
    _check_rate(name, rate)
    return detokenize(operation(tokenize(caption), rate, stable_rng(seed, key)))


def synonym_replacement(caption: str, alpha: float = 0.1, seed: int = 0, key: str = "") -> str:
    """Replace max(1, alpha * words) non-stop words by a random WordNet synonym.

    >>> synonym_replacement("Etiquette Icons. icon, sign", seed=1) != "Etiquette Icons. icon, sign"
    True
    """
    return _apply(_replace_synonyms, caption, alpha, "alpha_sr", seed, key)


def random_insertion(caption: str, alpha: float = 0.1, seed: int = 0, key: str = "") -> str:
    """Insert max(1, alpha * words) synonyms of random caption words at random positions.

    >>> len(random_insertion("a red dog").split()) > 3
    True
    """
    return _apply(_insert_synonyms, caption, alpha, "alpha_ri", seed, key)


def random_swap(caption: str, alpha: float = 0.1, seed: int = 0, key: str = "") -> str:
    """Swap two random words, max(1, alpha * words) times; punctuation stays in place.

    >>> sorted(random_swap("red dog, blue cat").replace(",", "").split())
    ['blue', 'cat', 'dog', 'red']
    """
    return _apply(_swap_words, caption, alpha, "alpha_rs", seed, key)


def random_deletion(caption: str, p: float = 0.1, seed: int = 0, key: str = "") -> str:
    """Delete each word with probability p; at least one word always stays.

    >>> random_deletion("dog", p=1.0)
    'dog'
    """
    return _apply(_delete_words, caption, p, "p_rd", seed, key)


def augment_caption(
    caption: str,
    n: int = 4,
    seed: int = 0,
    key: str = "",
    alpha_sr: float = 0.1,
    alpha_ri: float = 0.1,
    alpha_rs: float = 0.1,
    p_rd: float = 0.1,
) -> list[str]:
    """Up to ``n`` distinct EDA augmentations of ``caption``, none equal to it, none empty.

    The four operations take turns in a random order per sample (rate 0 switches one off),
    each result a single operation applied to the original, as in EDA. Results equal to the
    caption (after whitespace clean-up) or to an earlier result are dropped and retried, a
    bounded number of times: a caption with few variants ("dog", a lone number) yields fewer
    than ``n``, and an empty caption none, rather than duplicates that would only reweight it.

    >>> for text in augment_caption("Etiquette Icons. icon, sign, etiquette", n=3, key="000123"):
    ...     print(text)
    Etiquette Icons. icon, signalise, etiquette
    Etiquette etiquette. icon, sign, Icons
    Etiquette Icons. icon, signaling sign, etiquette
    >>> len(augment_caption("a dog on a red sofa", n=4, key="k"))
    4
    >>> augment_caption("   ")
    []
    """
    rates = {"alpha_sr": alpha_sr, "alpha_ri": alpha_ri, "alpha_rs": alpha_rs, "p_rd": p_rd}
    for name, rate in rates.items():
        _check_rate(name, rate)
    tokens = tokenize(caption)
    operations = [
        (operation, rate)
        for operation, rate in zip(
            (_replace_synonyms, _insert_synonyms, _swap_words, _delete_words), rates.values()
        )
        if rate > 0
    ]
    if not tokens or not operations or n <= 0:
        return []
    rng = stable_rng(seed, key)
    rng.shuffle(operations)
    original = detokenize(tokens)
    results: dict[str, None] = {}
    for attempt in range(5 * n):
        operation, rate = operations[attempt % len(operations)]
        text = detokenize(operation(list(tokens), rate, rng))
        if text and text != original:
            results[text] = None
            if len(results) == n:
                break
    return list(results)


def augment_captions(
    captions: Sequence[str],
    keys: Sequence[str],
    n: int = 4,
    seed: int = 0,
    progress: bool = False,
    **rates: float,
) -> list[list[str]]:
    """:func:`augment_caption` for many samples, each seeded by its own key.

    >>> out = augment_captions(["red dog", "blue cat"], keys=["000001", "000002"], n=2)
    >>> [len(augmented) for augmented in out]
    [2, 2]
    """
    if len(captions) != len(keys):
        raise UsageError(f"{len(captions)} captions but {len(keys)} keys; give one key per caption")
    pairs = zip(captions, keys)
    if progress:
        pairs = tqdm(pairs, total=len(captions), desc="augmenting captions", unit="caption")
    return [augment_caption(caption, n=n, seed=seed, key=key, **rates) for caption, key in pairs]
