"""The json fields that hold the ground truth of simulated noise, which nothing but scoring may read.

A demo build records what it did to a sample in these fields, so that detection can be measured. A
strategy, a ranking or a training step that read them would be told the answer: `multi-caption` refuses
them as caption fields, and tests check that every strategy and ranking gives the same output without them.

Example:
    >>> without_truth({"caption": "a dog", "injected": True, "original_caption": "a cat"})
    {'caption': 'a dog'}
"""

from __future__ import annotations

TRUTH_FIELDS = ("injected", "noise", "original_caption", "swapped_from")


def without_truth(meta: dict) -> dict:
    """A copy of `meta` with the truth fields deleted: what a sample of real, unlabelled data would hold."""
    return {name: value for name, value in meta.items() if name not in TRUTH_FIELDS}
