"""`multi-caption`: several captions per image from what the data already has, training samples one per step.

Sources, in order: the json `captions` list, then the title / description / keywords fields when the
json (or the parquet row) has them, then any metadata columns named in `caption_fields`. A list of
keywords or tags becomes one comma-separated caption; any other list gives one caption per item.
With `min_captions`, EDA augmentations of the primary caption fill up samples that have fewer.
The paper: 5 captions per image instead of 1 lowers memorization and raises utility.

Example:
    >>> from mitigation.multi_caption import captions_from_fields
    >>> captions_from_fields({"title": "Cigno", "keywords": ["swan", "bird"]}, ("title", "keywords"))
    ['Cigno', 'swan, bird']
"""

from __future__ import annotations

import json

from dataio.errors import UsageError
from dataio.reader import Dataset, Sample
from dataio.recipe import read_recipe
from dataio.truth import TRUTH_FIELDS
from dataio.writer import Keep
from mitigation.base import Options, Step, count
from train.eda import augment_caption

DEFAULT_FIELDS = ("title", "description", "keywords")
# Fields whose list items are single words: one caption joining them says more than one per word.
WORD_LIST_FIELDS = {"keywords", "tags", "keyword", "tag"}


def captions_from_fields(meta: dict, fields) -> list:
    """Caption-like texts of the named metadata fields, blank ones left out.

    >>> captions_from_fields({"alt": '["a cat", "cat on mat"]', "description": " "}, ("description", "alt"))
    ['a cat', 'cat on mat']
    """
    found = []
    for name in fields:
        value = _as_list(meta.get(name))
        if value is None:
            continue
        if isinstance(value, list):
            items = [" ".join(str(v).split()) for v in value if v is not None and str(v).strip()]
            found += [", ".join(items)] if name.lower() in WORD_LIST_FIELDS and items else items
        elif str(value).strip():
            found.append(" ".join(str(value).split()))
    return [c for c in found if c]


def _as_list(value):
    """img2dataset hands list columns over as JSON text in some formats; read those back as lists."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, list) else value
    if isinstance(value, tuple):
        return list(value)
    return value


def _norm(caption: str) -> str:
    return " ".join(caption.lower().split())


def new_captions(existing: list, candidates: list) -> list:
    """Candidates not yet among `existing`, each once, compared case- and whitespace-insensitively.

    >>> new_captions(["A swan"], ["a  swan", "Swan", "swan"])
    ['Swan']
    """
    seen, found = {_norm(c) for c in existing}, []
    for caption in candidates:
        if _norm(caption) not in seen:
            seen.add(_norm(caption))
            found.append(caption)
    return found


def gather_captions(dataset: Dataset, options: Options) -> Step:
    """Give each image every caption its data holds (plus EDA up to `min_captions`); training samples one."""
    if options.min_captions < 0:
        raise UsageError(f"--min-captions must be 0 or more, got {options.min_captions}")
    truth = [name for name in options.caption_fields if name in TRUTH_FIELDS]
    if truth:
        raise UsageError(f"--caption-fields {','.join(truth)}: the ground truth of simulated noise, never a caption "
                         f"({', '.join(TRUTH_FIELDS)} are for scoring detection only)")
    fields = tuple(dict.fromkeys(DEFAULT_FIELDS + tuple(options.caption_fields)))
    step = Step(
        "multi-caption",
        options={"fields": list(fields), "min_captions": options.min_captions, "seed": options.seed},
        training={"caption_sampling": True},
    )

    def decide(sample: Sample) -> Keep:
        from_fields = new_captions(sample.captions, captions_from_fields(sample.meta, fields))
        captions = sample.captions + from_fields
        missing = options.min_captions - len(captions)
        from_eda = []
        if missing > 0:
            # A key suffix keeps these apart from text-aug's augmentations of the same caption and seed.
            augmented = augment_caption(sample.caption, n=missing, seed=options.seed, key=f"{sample.key}:multi-caption")
            from_eda = new_captions(captions, augmented)
        count(step, "captions_from_fields", len(from_fields))
        count(step, "captions_from_eda", len(from_eda))
        if not from_fields and not from_eda:
            return Keep()
        return Keep(captions=captions + from_eda,
                    reason=f"{len(captions) + len(from_eda)} captions ({len(from_fields)} from fields, {len(from_eda)} EDA)")

    step.decide = decide
    return step


def captions_were_gathered(dataset, options: Options) -> bool:
    """Whether multi-caption gathered the captions text-aug will see: earlier in this run, or in the
    mitigation that wrote the input folder (its mitigation.json, or the one it was made from). The data
    alone cannot tell: where the json already lists every caption, multi-caption leaves samples as they are."""
    if "multi-caption" in options.prepared_before:
        return True
    if dataset is None:
        return False
    recipe = read_recipe(dataset.path)
    earlier = [s.get("name") for s in recipe.get("strategies", [])]
    earlier += recipe.get("source", {}).get("recipe", {}).get("strategies", [])
    return "multi-caption" in earlier
