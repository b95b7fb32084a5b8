"""What every mitigation strategy shares: the options it reads and the prepared `Step` it returns.

A strategy is a function `prepare(dataset, options) -> Step` (registered by name in
mitigation.strategies). A Step turns one sample into a decision: `Remove(reason)`, or
`Keep(captions=..., reason=...)` where `captions` is the sample's full new caption list, primary
first (None: captions unchanged). Steps of a combined run are chained by `combine`, each seeing the
sample as the previous ones left it; the first removal wins.

Example:
    >>> from curate.writer import Keep
    >>> shout = Step("shout", decide=lambda s: Keep(captions=s.captions + [s.caption.upper()], reason="+1"))
    >>> sample = Sample("k", b"", "png", "a dog", ["a dog"], {}, "00000")
    >>> combine([shout])(sample)
    Keep(caption=None, captions=['a dog', 'A DOG'], meta_update=None, reason='shout: +1')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional

from curate.dataset import Sample
from curate.writer import Decision, Keep, Remove

# The training loop's defaults: a recipe's `training` section says where a mitigation departs from them.
TRAINING_DEFAULTS = {"text_noise_sigma": 0.0, "image_aug": False, "caption_sampling": False}


@dataclass(frozen=True)
class Options:
    """Every strategy option, with its default; each strategy reads only its own (see STRATEGIES)."""

    seed: int = 0
    n_aug: int = 4
    paraphrase_model: Optional[str] = None
    paraphrase_n: int = 1
    paraphrase_prefix: str = ""
    caption_fields: tuple = ()
    min_captions: int = 0
    scores: Optional[str] = None
    by: str = "default"
    count: Optional[int] = None
    frac: Optional[float] = None
    threshold: Optional[float] = None
    sigma: float = 0.15
    progress: bool = True

    def changed_from_default(self) -> set:
        """Names of the options set to something other than their default."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}


@dataclass
class Step:
    """A prepared strategy: its per-sample decision, its recipe entry and its training-loop settings."""

    name: str
    decide: Optional[Callable[[Sample], Decision]] = None  # None: the data is left as it is
    options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)  # filled in while the data is written

    def recipe_entry(self) -> dict:
        return {"name": self.name, "options": self.options, "training": self.training, "stats": self.stats}


def combine(steps: list) -> Callable[[Sample], Decision]:
    """One writer decision from several steps, applied in order to the sample as each leaves it."""
    active = [step for step in steps if step.decide is not None]

    def decide(sample: Sample) -> Decision:
        current, captions, reasons = sample, None, []
        for step in active:
            decision = step.decide(current)
            if isinstance(decision, Remove):
                return Remove(f"{step.name}: {decision.reason}")
            if decision.captions is not None:
                captions = list(dict.fromkeys(decision.captions))
                current = dataclasses.replace(current, captions=captions)
            if decision.reason:
                reasons.append(f"{step.name}: {decision.reason}")
        return Keep(captions=captions, reason="; ".join(reasons))

    return decide


def count(step: Step, name: str, amount: int = 1) -> None:
    step.stats[name] = step.stats.get(name, 0) + amount
