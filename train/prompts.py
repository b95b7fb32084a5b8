"""Class names and prompt templates for zero-shot classification.

Two ways to name a class:
- `label_names`: the label string itself, cleaned ("signs_and_symbols" -> "signs and symbols");
- `caption_word_names`: the words the captions of that label actually use most distinctively. Web captions
  rarely say the category folder's name ("Etiquette Icons" under "signs_and_symbols"), so prompts built from
  caption words match what the text tower learned.

Example:
    >>> from train.prompts import label_names, caption_word_names
    >>> label_names(["signs_and_symbols"])
    {'signs_and_symbols': ['signs and symbols']}
    >>> caption_word_names(["circle", "circle", "square", "square"],
    ...                    [["a red round circle"], ["blue circle"], ["a green square box"], ["pink square"]], top=1)
    {'circle': ['circle'], 'square': ['square']}
"""

from __future__ import annotations

import math
import re
from collections import Counter

from train.eda import STOP_WORDS

DEFAULT_TEMPLATES = (
    "{}",
    "a picture of {}.",
    "a drawing of {}.",
    "clip art of {}.",
    "an illustration of {}.",
)

# Words that say nothing about a class: English function words (EDA's list) and caption boilerplate.
STOPWORDS = STOP_WORDS | frozenset("""
it's one two three image picture photo drawing clipart clip art illustration icon icons vector png jpg svg free
public domain openclipart file black white color colour small large big little top bottom left right center
centre shape shaped
""".split())

MIN_LIFT = 2.0
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")


def clean_label(label) -> str:
    return re.sub(r"[_\-/]+", " ", str(label)).strip().lower()


def label_names(labels) -> dict:
    """Each distinct label -> [its cleaned string]."""
    return {label: [clean_label(label)] for label in sorted(set(labels), key=str)}


def caption_word_names(labels, captions, top: int = 3) -> dict:
    """Each distinct label -> its `top` most distinctive caption words (pointwise mutual information weighted
    by frequency), falling back to the cleaned label when its captions have no distinctive word."""
    per_label: dict = {}
    overall: Counter = Counter()
    for label, sample_captions in zip(labels, captions):
        words = {w.lower() for c in sample_captions for w in _WORD.findall(c)} - STOPWORDS
        per_label.setdefault(label, Counter()).update(words)
        overall.update(words)
    total = sum(overall.values())
    names = {}
    for label in sorted(per_label, key=str):
        counts = per_label[label]
        label_total = sum(counts.values())

        def score(word):
            p_word_given_label = counts[word] / label_total
            return p_word_given_label * math.log(p_word_given_label / (overall[word] / total))

        # A word must be at least twice as common under this label as overall: words spread evenly over the
        # labels (colours, "background") say nothing about the class.
        distinctive = [w for w in counts if counts[w] / label_total >= MIN_LIFT * overall[w] / total]
        ranked = sorted(distinctive, key=lambda w: (-score(w), w))
        names[label] = ranked[:top] or [clean_label(label)]
    return names
