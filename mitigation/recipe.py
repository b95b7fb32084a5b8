"""`mitigation.json`: what a mitigated folder is and how to train on it, written beside its shards.

The file records the strategies with their options, the source dataset, the counts, and a
`training` section with the settings the training loop applies:

    text_noise_sigma  float   Gaussian noise on text embeddings (0 = off)
    image_aug         bool    random image augmentation
    caption_sampling  bool    draw one caption of the json `captions` list per step

A training loop needs one call (the defaults when the folder has no recipe):

    >>> from mitigation.recipe import training_overrides
    >>> training_overrides("laion_subset.text-noise")          # doctest: +SKIP
    {'text_noise_sigma': 0.15, 'image_aug': False, 'caption_sampling': False}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from curate.errors import UsageError
from mitigation.base import TRAINING_DEFAULTS

RECIPE_NAME = "mitigation.json"
RECIPE_VERSION = 1


def training_section(steps: list, inherited: dict | None = None) -> dict:
    """The training keys of a run: the input's own recipe settings, then each step's, the later winning.

    >>> from mitigation.base import Step
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


def recipe_bytes(recipe: dict) -> bytes:
    """The recipe as the bytes written to mitigation.json (for write_dataset's extra_files).

    >>> recipe_bytes({"training": {"image_aug": True}})[:12]
    b'{\\n  "trainin'
    """
    return (json.dumps(recipe, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_recipe(folder, recipe: dict) -> Path:
    """Write (or replace) FOLDER/mitigation.json atomically."""
    final = Path(folder) / RECIPE_NAME
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    tmp.write_bytes(recipe_bytes(recipe))
    tmp.replace(final)
    return final


def read_recipe(data_dir) -> dict:
    """DIR/mitigation.json as a dict, {} when the folder has none; UsageError when it is not valid json."""
    path = Path(data_dir) / RECIPE_NAME
    if not path.exists():
        return {}
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid json ({error}); rewrite it with `python cli.py mitigate` or delete it") from None
    if not isinstance(recipe, dict):
        raise UsageError(f"{path}: expected a json object, found {type(recipe).__name__}; rewrite or delete it")
    return recipe


def training_overrides(data_dir) -> dict:
    """The training settings for DIR: text_noise_sigma, image_aug, caption_sampling (defaults if no recipe)."""
    path = Path(data_dir) / RECIPE_NAME
    section = read_recipe(data_dir).get("training", {})
    if not isinstance(section, dict):
        raise UsageError(f"{path}: `training` must be a json object; rewrite it with `python cli.py mitigate`")
    training = dict(TRAINING_DEFAULTS)
    for name, default in TRAINING_DEFAULTS.items():
        if name not in section:
            continue
        value = section[name]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UsageError(f"{path}: training.{name} must be true or false, got {value!r}")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise UsageError(f"{path}: training.{name} must be a number of 0 or more, got {value!r}")
        training[name] = float(value) if isinstance(default, float) else value
    return training
