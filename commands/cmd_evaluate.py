"""measure retrieval, zero-shot and linear-probe utility of a saved model

    python cli.py evaluate --model runs/base --data laion_subset
    python cli.py evaluate --model runs/base --data laion_subset --out metrics.json

By default the held-out keys of the model's own training run (its recorded --heldout-frac and --split-seed);
--keys FILE or --all to choose others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dataio.atomic import write_json
from dataio.errors import UsageError
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


def choose_keys(args: argparse.Namespace, info: dict, table_keys: list) -> list:
    from commands.cmd_train import read_keys
    from train.data import split_heldout

    if args.all:
        return list(table_keys)
    if args.keys:
        available = set(table_keys)
        keys = [k for k in read_keys(args.keys) if k in available]
        if not keys:
            raise UsageError(f"--keys {args.keys}: none of its keys is readable in {args.data}")
        return keys
    frac = args.heldout_frac if args.heldout_frac is not None else info.get("heldout_frac", 0.1)
    seed = args.split_seed if args.split_seed is not None else info.get("split_seed", 0)
    _, heldout = split_heldout(table_keys, frac, seed)
    if not heldout:
        raise UsageError(f"no held-out keys in {args.data} at --heldout-frac {frac}; use --all or --keys FILE")
    return heldout


def run(args: argparse.Namespace) -> int:
    from train.data import load_table
    from train.distributed import pick_device
    from train.evaluate import evaluate, format_metrics
    from train.models import load_model

    model, tokenizer, info = load_model(args.model, device=pick_device(args.device))
    table = load_table(args.data, image_size=info["image_size"], memory_budget_mb=args.memory_budget_mb,
                       progress=not args.no_progress)
    keys = choose_keys(args, info, table.keys)
    label_field = args.label_field or info.get("label_field", "category")
    print(f"evaluating {args.model} on {len(keys)} samples of {args.data}", file=sys.stderr)
    metrics = evaluate(model, tokenizer, table, keys, label_field=label_field)
    metrics["model"] = str(args.model)
    metrics["data"] = str(args.data)
    print(format_metrics(metrics))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, metrics)
        print(f"metrics written to {out}", file=sys.stderr)
    return 0
