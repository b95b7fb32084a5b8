"""measure retrieval, zero-shot and linear-probe utility of a saved model

    python cli.py evaluate --model runs/base --data laion_subset
    python cli.py evaluate --model runs/base --data laion_subset --out metrics.json

By default the held-out keys of the model's own training run (its recorded --heldout-frac and --split-seed);
--keys FILE or --all to choose others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from commands.cmd_train import read_keys
from dataio.atomic import write_json
from train.data import DEFAULT_MEMORY_BUDGET_MB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder written by `cli.py train`")
    parser.add_argument("--data", required=True, help="img2dataset output folder")
    parser.add_argument("--out", default=None, metavar="JSON", help="also write the metrics to this json file")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--keys", default=None, metavar="FILE", help="evaluate these keys (one per line)")
    which.add_argument("--all", action="store_true", help="evaluate every key of --data")
    parser.add_argument("--heldout-frac", type=float, default=None,
                        help="held-out fraction (default: the one the model was trained with, else 0.1)")
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of the held-out split (default: the model's)")
    parser.add_argument("--label-field", default=None, help="json field used as the class label (default: category)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--memory-budget-mb", type=float, default=DEFAULT_MEMORY_BUDGET_MB)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from train.evaluate import format_metrics
    from train.run import evaluate_saved

    keys = read_keys(args.keys) if args.keys else None
    metrics = evaluate_saved(args.model, args.data, keys=keys, every_key=args.all, heldout_frac=args.heldout_frac,
                             split_seed=args.split_seed, label_field=args.label_field, device=args.device,
                             memory_budget_mb=args.memory_budget_mb, progress=not args.no_progress)
    print(format_metrics(metrics))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, metrics)
        print(f"metrics written to {out}", file=sys.stderr)
    return 0
