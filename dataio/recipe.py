"""`mitigation.json`: what a mitigated folder is and how to train on it, written beside its shards.

The file records the strategies with their options, the source dataset, the counts, and a
`training` section with the settings the training loop applies:

    text_noise_sigma  float   Gaussian noise on text embeddings (0 = off)
    image_aug         bool    random image augmentation
    caption_sampling  bool    draw one caption of the json `captions` list per step

A training loop needs one call (the defaults when the folder has no recipe):

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> training_overrides(folder)
    {'text_noise_sigma': 0.0, 'image_aug': False, 'caption_sampling': False}
    >>> _ = write_recipe(folder, {"training": {"text_noise_sigma": 0.15}})
    >>> training_overrides(folder)["text_noise_sigma"]
    0.15
"""

from __future__ import annotations

import json
from pathlib import Path

from dataio.atomic import write_bytes
from dataio.errors import UsageError

RECIPE_NAME = "mitigation.json"
RECIPE_VERSION = 1
# The training loop's defaults: a recipe's `training` section says where a mitigation departs from them.
TRAINING_DEFAULTS = {"text_noise_sigma": 0.0, "image_aug": False, "caption_sampling": False}


def recipe_bytes(recipe: dict) -> bytes:
    """The recipe as the bytes written to mitigation.json (for write_dataset's extra_files).

    >>> recipe_bytes({"training": {"image_aug": True}})[:12]
    b'{\\n  "trainin'
    """
    return (json.dumps(recipe, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_recipe(folder, recipe: dict) -> Path:
    """Write (or replace) FOLDER/mitigation.json atomically."""
    final = Path(folder) / RECIPE_NAME
    write_bytes(final, recipe_bytes(recipe))
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
