"""Training settings (a json-serializable dataclass) and what a training run returns.

Example:
    >>> from train.config import TrainConfig
    >>> config = TrainConfig(epochs=2, text_noise_sigma=0.15)
    >>> TrainConfig.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import torch

LOSSES = ("clip", "siglip")
PRECISIONS = ("fp32", "amp_bf16", "amp")


@dataclass
class TrainConfig:
    """Everything that decides a training run's result (with the data and the key list).

    text_noise_sigma: std of Gaussian noise added to each coordinate of the L2-normalized text embedding
        in training forward passes only, not re-normalized (see train.loop.add_text_noise for why).
    image_aug: random resized crop (area 0.7-1) + horizontal flip, on tensors, per sample.
    caption_sampling: a sample with several captions contributes one, drawn per epoch (seeded);
        off: always the primary caption.
    warmup: linear warm-up steps, then cosine decay to 0 over the remaining steps.
    precision: fp32 | amp_bf16 (autocast bfloat16, CPU or GPU) | amp (autocast float16 + loss scaling, GPU).
    """

    model: str = "clipmem-tiny"
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    wd: float = 0.1
    warmup: int = 50
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    seed: int = 0
    image_size: int | None = None
    text_noise_sigma: float = 0.0
    image_aug: bool = False
    caption_sampling: bool = False
    loss: str = "clip"
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    device: str = "auto"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("need epochs >= 1 and batch_size >= 2 (a contrastive batch needs negatives)")
        if self.text_noise_sigma < 0:
            raise ValueError("text_noise_sigma must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))


@dataclass
class TrainResult:
    """A finished (or resumed-and-finished) run.

    loss_history[e, i] is the per-sample contrastive loss of keys[i] in epoch e, NaN if it was not seen that
    epoch; cumulative sample loss (csl) sums it over epochs. step_seconds: wall time of each step of this run
    (a resumed run times only its own steps).
    """

    model: torch.nn.Module
    tokenizer: object
    config: TrainConfig
    keys: list
    loss_history: torch.Tensor
    step_losses: list = field(default_factory=list)
    step_seconds: list = field(default_factory=list)
    seconds: float = 0.0
    samples_per_s: float = 0.0

    @property
    def sample_losses(self) -> dict:
        """key -> the list of its per-sample losses, in the order it was seen."""
        history = self.loss_history.T.tolist()
        return {key: [v for v in row if not math.isnan(v)] for key, row in zip(self.keys, history)}

    def csl(self) -> dict:
        """key -> cumulative sample loss (sum over every time the sample was seen)."""
        totals = torch.nan_to_num(self.loss_history, nan=0.0).sum(0).tolist()
        return dict(zip(self.keys, totals))
