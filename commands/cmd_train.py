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
import sys
from pathlib import Path

from dataio.errors import UsageError
from train.config import LOSSES, PRECISIONS, TrainConfig
from train.data import DEFAULT_MEMORY_BUDGET_MB
from train.evaluate import format_metrics

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


def run(args: argparse.Namespace) -> int:
    from train import train

    run = train(args.data, args.out, model=args.model, pretrained=args.pretrained, image_size=args.image_size,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, wd=args.wd, warmup=args.warmup,
                seed=args.seed, text_noise=args.text_noise, image_aug=args.image_aug,
                caption_sampling=args.caption_sampling, loss=args.loss, precision=args.precision,
                grad_clip=args.grad_clip, device=args.device, keys=read_keys(args.keys) if args.keys else None,
                resume=args.resume, heldout_frac=args.heldout_frac, split_seed=args.split_seed,
                label_field=args.label_field, memory_budget_mb=args.memory_budget_mb,
                progress=not args.no_progress, run_info={"keys_file": args.keys})
    if run.result is None:  # a torchrun rank other than 0
        return 0
    result = run.result
    print(f"trained {len(result.step_losses)} steps in {result.seconds:.1f} s ({result.samples_per_s:.0f} samples/s); "
          f"model in {args.out}", file=sys.stderr)
    if run.metrics:
        print(format_metrics(run.metrics))
    return 0
