"""What every mitigation strategy shares: the options it reads and the prepared `Step` it returns.

A strategy is a function `prepare(dataset, options) -> Step` (registered by name in
mitigation.strategies). A Step turns one sample into a decision: `Remove(reason)`, or
`Keep(captions=..., reason=...)` where `captions` is the sample's full new caption list, primary
first (None: captions unchanged). Steps of a combined run are chained by `combine`, each seeing the
sample as the previous ones left it; the first removal wins.

Example:
    >>> from dataio.writer import Keep
    >>> shout = Step("shout", decide=lambda s: Keep(captions=s.captions + [s.caption.upper()], reason="+1"))
    >>> sample = Sample("k", b"", "png", "a dog", ["a dog"], {}, "00000")
    >>> combine([shout])(sample)
    Keep(caption=None, captions=['a dog', 'A DOG'], meta_update=None, reason='shout: +1')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from curate.rankings import DEFAULT_RANKING
from dataio.reader import Sample
from dataio.recipe import RECIPE_VERSION, TRAINING_DEFAULTS
from dataio.writer import ByKey, Decision, Keep, Remove


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
    by: str = DEFAULT_RANKING
    count: Optional[int] = None
    frac: Optional[float] = None
    threshold: Optional[float] = None
    decisions: Optional[str] = None  # report.html's decisions.csv: `remove` drops the pairs reviewed wrong caption
    sigma: float = 0.15
    progress: bool = True
    prepared_before: tuple = ()  # the strategies of this run that come before the one being prepared

    def changed_from_default(self) -> set:
        """Names of the options set to something other than their default."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}


@dataclass
class Step:
    """A prepared strategy: its per-sample decision, its recipe entry and its training-loop settings."""

    name: str
    decide: Optional[Callable[[Sample], Decision]] = None  # None: the data is left as it is
    # the same decision from the key alone, where the strategy needs nothing else: lets the writer copy
    # samples unread (dataio.writer.ByKey)
    decide_key: Optional[Callable[[str], Decision]] = None
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

    if active and all(step.decide_key is not None for step in active):
        return ByKey(on_key=_combine_by_key(active), on_sample=decide)
    return decide


def _combine_by_key(active: list) -> Callable[[str], Decision]:
    def decide_key(key: str) -> Decision:
        reasons = []
        for step in active:
            decision = step.decide_key(key)
            if isinstance(decision, Remove):
                return Remove(f"{step.name}: {decision.reason}")
            if decision.reason:
                reasons.append(f"{step.name}: {decision.reason}")
        return Keep(reason="; ".join(reasons))

    return decide_key


def count(step: Step, name: str, amount: int = 1) -> None:
    step.stats[name] = step.stats.get(name, 0) + amount


def training_section(steps: list, inherited: dict | None = None) -> dict:
    """The training keys of a run: the input's own recipe settings, then each step's, the later winning.

    >>> training_section([Step("text-noise", training={"text_noise_sigma": 0.15})], {"image_aug": True})
    {'text_noise_sigma': 0.15, 'image_aug': True, 'caption_sampling': False}
    """
    training = dict(TRAINING_DEFAULTS)
    training.update({k: v for k, v in (inherited or {}).items() if k in TRAINING_DEFAULTS})
    for step in steps:
        training.update(step.training)
    return training


def build_recipe(steps: list, source, source_format: str, output, counts: dict | None = None,
                 inherited: dict | None = None, command: str = "") -> dict:
    """The recipe as a dict. `inherited` is the source folder's own recipe ({} if none): chained
    mitigations keep the earlier training settings and say where they came from."""
    recipe = {
        "version": RECIPE_VERSION,
        "strategies": [step.recipe_entry() for step in steps],
        "source": {"path": str(Path(source).resolve()), "format": source_format},
        "output": str(Path(output).resolve()),
        "counts": counts or {},
        "training": training_section(steps, (inherited or {}).get("training")),
    }
    if inherited:
        recipe["source"]["recipe"] = {"strategies": [s.get("name") for s in inherited.get("strategies", [])],
                                      "source": inherited.get("source", {}).get("path")}
    if command:
        recipe["command"] = command
    return recipe
