"""train a CLIP model (open_clip) on a dataset folder

    python cli.py train --data laion_subset --out runs/base
    python cli.py train --data laion_subset --out runs/noise --text-noise 0.15 --image-aug
    torchrun --nproc_per_node 2 cli.py train --data laion_subset --out runs/base     # several processes

Trains on the keys outside the held-out split (a stable hash of each key: --heldout-frac, --split-seed),
writes the model folder to --out (with checkpoint.pt after each epoch, train_log.json, sample_losses.parquet,
metrics.json) and prints the held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curate.errors import UsageError
from train.config import LOSSES, PRECISIONS, TrainConfig
from train.data import DEFAULT_MEMORY_BUDGET_MB, split_heldout

DEFAULTS = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="img2dataset output folder")
    parser.add_argument("--out", required=True, help="output folder: the model, checkpoint and logs")
    parser.add_argument("--model", default=DEFAULTS.model,
                        help="preset (clipmem-tiny, clipmem-tiny-vit, clipmem-small) or any open_clip architecture")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag or weights file (tags need network)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the architecture's)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="global batch size")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--wd", type=float, default=DEFAULTS.wd, help="AdamW weight decay")
    parser.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="warm-up steps")
    parser.add_argument("--text-noise", type=float, default=None, metavar="SIGMA",
                        help="Gaussian noise on text embeddings in training (the paper's sweet spot: 0.15); "
                             "default: the data's mitigation.json, else 0")
    parser.add_argument("--image-aug", action=argparse.BooleanOptionalAction, default=None,
                        help="random resized crop (0.7-1) + flip; default: the data's mitigation.json, else off")
    parser.add_argument("--caption-sampling", action=argparse.BooleanOptionalAction, default=None,
                        help="samples with several captions contribute one drawn per epoch; "
                             "default: the data's mitigation.json, else off")
    parser.add_argument("--loss", choices=LOSSES, default=DEFAULTS.loss)
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision)
    parser.add_argument("--grad-clip", type=float, default=DEFAULTS.grad_clip, help="max gradient norm (0: off)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--keys", default=None, metavar="FILE", help="train only on these keys (one per line)")
    parser.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="initial weights and training randomness")
    parser.add_argument("--heldout-frac", type=float, default=0.1, help="fraction of keys held out for evaluation")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--label-field", default="category", help="json field used as the class label")
    parser.add_argument("--memory-budget-mb", type=float, default=DEFAULT_MEMORY_BUDGET_MB,
                        help="decoded images beyond this go to a file on disk")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def read_keys(path: str) -> list:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--keys {path}: no such file; give a text file with one key per line")
    keys = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not keys:
        raise UsageError(f"--keys {path}: the file lists no keys")
    return keys


def mitigation_settings(args: argparse.Namespace) -> dict:
    """Training-time settings: an option given on the command line wins over the data's mitigation.json."""
    from mitigation.recipe import training_overrides

    recipe = training_overrides(args.data)
    given = {"text_noise_sigma": args.text_noise, "image_aug": args.image_aug, "caption_sampling": args.caption_sampling}
    return {name: value if value is not None else recipe[name] for name, value in given.items()}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    settings = mitigation_settings(args)
    try:
        return TrainConfig(model=args.model, pretrained=args.pretrained, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, wd=args.wd, warmup=args.warmup, seed=args.seed,
                           **settings, loss=args.loss, grad_clip=args.grad_clip or None,
                           precision=args.precision, device=args.device, image_size=args.image_size)
    except ValueError as error:
        raise UsageError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    from train.data import load_table
    from train.distributed import init_distributed
    from train.evaluate import evaluate, format_metrics
    from train.loop import train_clip
    from train.models import atomic_write, input_size

    config = config_from_args(args)
    if not 0 <= args.heldout_frac < 1:
        raise UsageError(f"--heldout-frac {args.heldout_frac}: must be in [0, 1)")
    wanted = read_keys(args.keys) if args.keys else None
    image_size = input_size(config.model, config.image_size)
    world = init_distributed(config.device)
    progress = not args.no_progress and world.is_main
    table = load_table(args.data, image_size=image_size, memory_budget_mb=args.memory_budget_mb, progress=progress)
    train_keys, heldout_keys = split_heldout(table.keys, args.heldout_frac, args.split_seed)
    if wanted is not None:
        chosen = set(wanted) & set(train_keys)
        unknown = len(set(wanted) - set(table.keys))
        if world.is_main and unknown:
            print(f"note: {unknown} keys of {args.keys} are not readable in {args.data}; training without them",
                  file=sys.stderr)
        train_keys = [k for k in train_keys if k in chosen]
    if world.is_main:
        skipped = f", {len(table.skipped)} unreadable skipped" if table.skipped else ""
        print(f"training on {len(train_keys)} samples, {len(heldout_keys)} held out{skipped}", file=sys.stderr)

    def report_epoch(epoch: int, stats: dict) -> None:
        if world.is_main:
            print(f"epoch {epoch + 1}/{config.epochs}: mean sample loss {stats['mean_loss']:.4f}", file=sys.stderr)

    split = {"heldout_frac": args.heldout_frac, "split_seed": args.split_seed, "label_field": args.label_field,
             "data": str(args.data), "keys_file": args.keys}
    result = train_clip(table, train_keys, config, args.out, resume=args.resume, on_epoch_end=report_epoch,
                        progress=progress, run_info=split)
    if not world.is_main:
        return 0
    print(f"trained {len(result.step_losses)} steps in {result.seconds:.1f} s ({result.samples_per_s:.0f} samples/s); "
          f"model in {args.out}", file=sys.stderr)
    if heldout_keys:
        metrics = evaluate(result.model, result.tokenizer, table, heldout_keys, label_field=args.label_field)
        atomic_write(Path(args.out) / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2)))
        print(format_metrics(metrics))
    return 0
