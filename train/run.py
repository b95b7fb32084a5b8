"""train(data, out, ...): one CLIP model on a dataset folder, the way `python cli.py train` trains it.

The folder's mitigation.json (written by `mitigate`) sets text-embedding noise, image augmentation and
caption sampling; an argument given here wins over it. A stable hash of each key holds out
`heldout_frac` of the data, on which the finished model is evaluated (metrics.json).

Example:
    >>> from train import train
    >>> run = train("laion_subset.text-noise", "runs/noise", epochs=2)      # doctest: +SKIP
    >>> run.config.text_noise_sigma, run.metrics["linear_probe_acc"]       # doctest: +SKIP
    (0.15, 0.41)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from dataio.atomic import write_json
from dataio.errors import UsageError
from dataio.recipe import training_overrides
from train.config import TrainConfig, TrainResult
from train.data import DEFAULT_MEMORY_BUDGET_MB, load_table, split_heldout
from train.distributed import init_distributed, pick_device
from train.evaluate import evaluate
from train.loop import train_clip
from train.models import input_size, load_model

METRICS_FILE = "metrics.json"


@dataclass
class TrainRun:
    """A finished run: the model and its losses (`result`), held-out metrics, and how the data was split."""

    result: TrainResult | None  # None on torchrun ranks other than 0
    config: TrainConfig
    train_keys: list
    heldout_keys: list
    metrics: dict = field(default_factory=dict)
    out: Path | None = None


def training_settings(data, text_noise: float | None = None, image_aug: bool | None = None,
                      caption_sampling: bool | None = None) -> dict:
    """The data's mitigation.json training section, with every argument that is not None winning over it."""
    recipe = training_overrides(data)
    given = {"text_noise_sigma": text_noise, "image_aug": image_aug, "caption_sampling": caption_sampling}
    return {name: value if value is not None else recipe[name] for name, value in given.items()}


def train(data, out, *, model: str = "clipmem-tiny", pretrained: str | None = None, image_size: int | None = None,
          epochs: int = 10, batch_size: int = 128, lr: float = 5e-4, wd: float = 0.1, warmup: int = 50,
          seed: int = 0, text_noise: float | None = None, image_aug: bool | None = None,
          caption_sampling: bool | None = None, loss: str = "clip", precision: str = "fp32",
          grad_clip: float | None = 1.0, device: str = "auto", keys: list | None = None, resume: bool = False,
          heldout_frac: float = 0.1, split_seed: int = 0, label_field: str = "category",
          memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, progress: bool = True,
          run_info: dict | None = None) -> TrainRun:
    """Train on the keys of `data` outside the held-out split (and in `keys`, if given); save to `out`.

    Under torchrun every process calls this; rank 0 writes and evaluates. `run_info` is recorded in the
    model's clipmem.json and train_log.json beside the split settings.
    """
    settings = training_settings(data, text_noise, image_aug, caption_sampling)
    try:
        config = TrainConfig(model=model, pretrained=pretrained, epochs=epochs, batch_size=batch_size, lr=lr, wd=wd,
                             warmup=warmup, seed=seed, **settings, loss=loss, grad_clip=grad_clip or None,
                             precision=precision, device=device, image_size=image_size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not 0 <= heldout_frac < 1:
        raise UsageError(f"heldout_frac {heldout_frac}: must be in [0, 1)")
    world = init_distributed(config.device)
    progress = progress and world.is_main
    table = load_table(data, image_size=input_size(config.model, config.image_size),
                       memory_budget_mb=memory_budget_mb, progress=progress)
    train_keys, heldout_keys = split_heldout(table.keys, heldout_frac, split_seed)
    if keys is not None:
        chosen = set(keys) & set(train_keys)
        unknown = len(set(keys) - set(table.keys))
        if world.is_main and unknown:
            print(f"note: {unknown} of the given keys are not readable in {data}; training without them",
                  file=sys.stderr)
        train_keys = [k for k in train_keys if k in chosen]
    if progress:
        skipped = f", {len(table.skipped)} unreadable skipped" if table.skipped else ""
        print(f"training on {len(train_keys)} samples, {len(heldout_keys)} held out{skipped}", file=sys.stderr)

    def report_epoch(epoch: int, stats: dict) -> None:
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}: mean sample loss {stats['mean_loss']:.4f}", file=sys.stderr)

    split = {"heldout_frac": heldout_frac, "split_seed": split_seed, "label_field": label_field, "data": str(data),
             **(run_info or {})}
    result = train_clip(table, train_keys, config, out, resume=resume, on_epoch_end=report_epoch,
                        progress=progress, run_info=split)
    run = TrainRun(result if world.is_main else None, config, train_keys, heldout_keys, out=Path(out))
    if world.is_main and heldout_keys:
        run.metrics = evaluate(result.model, result.tokenizer, table, heldout_keys, label_field=label_field)
        write_json(Path(out) / METRICS_FILE, run.metrics)
    return run


def evaluate_saved(model_dir, data, keys: list | None = None, every_key: bool = False,
                   heldout_frac: float | None = None, split_seed: int | None = None, label_field: str | None = None,
                   device: str = "auto", memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
                   progress: bool = True) -> dict:
    """Utility metrics of a model folder written by `train` on `data`.

    Evaluates `keys` if given, every key with `every_key`, else the model's own held-out split (its recorded
    heldout_frac and split_seed unless given here). The label field defaults to the one it trained with.
    """
    model, tokenizer, info = load_model(model_dir, device=pick_device(device))
    table = load_table(data, image_size=info["image_size"], memory_budget_mb=memory_budget_mb, progress=progress)
    if every_key:
        chosen = list(table.keys)
    elif keys is not None:
        available = set(table.keys)
        chosen = [k for k in keys if k in available]
        if not chosen:
            raise UsageError(f"none of the given keys is readable in {data}")
    else:
        frac = heldout_frac if heldout_frac is not None else info.get("heldout_frac", 0.1)
        seed = split_seed if split_seed is not None else info.get("split_seed", 0)
        chosen = split_heldout(table.keys, frac, seed)[1]
        if not chosen:
            raise UsageError(f"no held-out keys in {data} at --heldout-frac {frac}; use --all or --keys FILE")
    if progress:
        print(f"evaluating {model_dir} on {len(chosen)} samples of {data}", file=sys.stderr)
    metrics = evaluate(model, tokenizer, table, chosen, label_field=label_field or info.get("label_field", "category"))
    return {**metrics, "model": str(model_dir), "data": str(data)}
