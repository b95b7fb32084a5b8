"""Build, save and load open_clip models; register the small CPU presets.

Any open_clip architecture works by name (`open_clip.list_models()`); the presets in
train/model_configs/ (clipmem-tiny, clipmem-tiny-vit, clipmem-small) are registered with
`open_clip.add_model_config` on import, so open_clip (and open_clip_train) find them too.

A saved model is a folder that plain open_clip can read back as well:
    open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ...}
    open_clip_model.safetensors  the weights
    clipmem.json                 how it was made: model name, pretrained tag, seed, training config

Example:
    >>> from train.models import create_model, save_model, load_model
    >>> model, tokenizer, image_size = create_model("clipmem-tiny", seed=0)
    >>> image_size
    64
    >>> tokenizer(["a red circle"]).shape
    torch.Size([1, 32])
    >>> save_model(model, "/tmp/tiny_model", {"note": "untrained"})   # doctest: +SKIP
    >>> model, tokenizer, info = load_model("/tmp/tiny_model")        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_model as _save_safetensors

from dataio.atomic import atomic_write
from dataio.errors import UsageError

PRESET_DIR = Path(__file__).parent / "model_configs"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.json"))
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"
INFO_FILE = "clipmem.json"
# SigLIP needs a learnable bias and a lower initial temperature (values from the SigLIP paper / open_clip).
SIGLIP_INIT = {"init_logit_scale": 2.302585092994046, "init_logit_bias": -10.0}

if str(PRESET_DIR) not in {str(p) for p in open_clip.factory._MODEL_CONFIG_PATHS}:
    open_clip.add_model_config(PRESET_DIR)


def create_model(name: str, pretrained: str | None = None, seed: int = 0, siglip: bool = False,
                 image_size: int | None = None, device: str | torch.device = "cpu"):
    """Build an open_clip model; the same name and seed always give the same initial weights.

    Returns (model, tokenizer, image_size). `pretrained` is an open_clip tag (e.g. "openai") or a weights
    file; tags download from the Hugging Face hub, so without network they fail with a UsageError.
    `image_size` overrides the architecture's input size; `siglip` adds the learnable logit bias SigLIP needs.

    Example:
        >>> model, tokenizer, size = create_model("clipmem-tiny", seed=1)
        >>> a, _, _ = create_model("clipmem-tiny", seed=1)
        >>> all(torch.equal(p, q) for p, q in zip(model.parameters(), a.parameters()))
        True
    """
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise UsageError(f"unknown model '{name}'; use a preset ({', '.join(PRESETS)}) "
                         "or an open_clip architecture from open_clip.list_models()")
    model_kwargs = dict(SIGLIP_INIT) if siglip else {}
    if image_size is not None:
        model_cfg["vision_cfg"]["image_size"] = image_size
    _check_pretrained(name, pretrained)
    from_file = bool(pretrained) and os.path.isfile(pretrained)
    # Forked RNG: seeding here must not change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            with _quiet_open_clip(), _hub_offline_unless_reachable(pretrained and not from_file):
                model = open_clip.create_model(name, pretrained=pretrained, force_image_size=image_size,
                                               **model_kwargs)
        except (RuntimeError, KeyError, ValueError, OSError) as error:
            reason = _first_line(error).split(" Last error:")[0]
            if from_file:
                raise UsageError(f"--pretrained {pretrained}: cannot load it into {name} ({reason[:200]}); give an "
                                 "open_clip checkpoint of this architecture") from None
            raise UsageError(f"--pretrained {pretrained} for {name}: {reason}; tags download from the Hugging Face "
                             "hub (needs network or its local cache), or give a local weights file path") from None
    model.clipmem_spec = {"model": name, "pretrained": pretrained, "seed": seed, "siglip": siglip,
                          "model_cfg": {**model_cfg, **model_kwargs}}
    with _quiet_open_clip():
        tokenizer = open_clip.get_tokenizer(name)
    return model.to(device), tokenizer, image_size_of(model)


HUB_HOST = ("huggingface.co", 443)
REACH_TIMEOUT_S = 3.0


def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers at all; a proxy in the environment is trusted to reach it."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.create_connection(HUB_HOST, timeout=REACH_TIMEOUT_S).close()
        return True
    except OSError:
        return False


@contextmanager
def _hub_offline_unless_reachable(uses_hub: bool):
    """Without a hub to reach, look only in the local cache: a missing tag then fails at once instead of
    after a minute of download retries."""
    import huggingface_hub.constants as hub

    offline = bool(uses_hub) and not hub.HF_HUB_OFFLINE and not hub_reachable()
    previous = hub.HF_HUB_OFFLINE
    if offline:
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = previous


@contextmanager
def _quiet_open_clip():
    """open_clip logs each loading step (and 'no pretrained weights' for every fresh model) on the root
    logger; our errors say what matters, so keep the console readable."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(previous)


def input_size(name: str, image_size: int | None = None) -> int:
    """The image size a model of this architecture takes (without building it); UsageError for unknown names."""
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise UsageError(f"unknown model '{name}'; use a preset ({', '.join(PRESETS)}) "
                         "or an open_clip architecture from open_clip.list_models()")
    size = image_size or model_cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _check_pretrained(name: str, pretrained: str | None) -> None:
    if not pretrained or os.path.isfile(pretrained):
        return
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        known = ", ".join(tags) if tags else "none (train from scratch, or give a weights file path)"
        raise UsageError(f"--pretrained {pretrained}: not a tag of {name} nor a file; known tags: {known}")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def image_size_of(model) -> int:
    """The square input size the image tower expects."""
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def image_mean_std(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel normalization of the image tower, shaped [1, 3, 1, 1] for uint8 / 255 inputs."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def save_model(model, folder: str | Path, info: dict | None = None) -> Path:
    """Write the model files into `folder` (created if needed), each file atomically; returns the folder.

    Other files in the folder (a training checkpoint, loss records) are left alone, so a training run's
    output folder is the model folder. clipmem.json is written last: its presence marks a complete save.
    """
    folder = Path(folder)
    spec = getattr(model, "clipmem_spec", None)
    model = getattr(model, "module", model)
    spec = spec or getattr(model, "clipmem_spec", None)
    if spec is None:
        raise UsageError("save_model needs a model built by train.models.create_model or load_model")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INFO_FILE).unlink(missing_ok=True)
    preprocess = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: _save_safetensors(model, str(tmp)))
    atomic_write(folder / CONFIG_FILE, lambda tmp: _write_json(tmp, {"model_cfg": spec["model_cfg"],
                                                                 "preprocess_cfg": preprocess}))
    record = {k: v for k, v in spec.items() if k != "model_cfg"}
    info = {**record, "image_size": image_size_of(model), **(info or {})}
    atomic_write(folder / INFO_FILE, lambda tmp: _write_json(tmp, info))
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def load_model(folder: str | Path, device: str | torch.device = "cpu"):
    """Read a folder written by save_model; returns (model, tokenizer, info) with the model in eval mode.

    Weights load through safetensors (open_clip's `local-dir:` schema), never through pickle.
    """
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE, INFO_FILE):
        if not (folder / name).is_file():
            raise UsageError(f"{folder}: not a saved model (missing {name}); give a folder written by `cli.py train`")
    info = json.loads((folder / INFO_FILE).read_text())
    model_cfg = json.loads((folder / CONFIG_FILE).read_text())["model_cfg"]
    with _quiet_open_clip():
        model = open_clip.create_model(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.clipmem_spec = {"model": info.get("model"), "pretrained": info.get("pretrained"),
                          "seed": info.get("seed"), "siglip": info.get("siglip", False),
                          "model_cfg": deepcopy(model_cfg)}
    return model.to(device).eval(), tokenizer, info
