"""retrain under each strategy and report utility against memorization

    python cli.py tradeoff --data laion_subset --quick
    python cli.py tradeoff --data laion_subset --strategies baseline,text-aug,multi-caption,text-noise,remove \\
        --seeds 3
    python cli.py tradeoff --strategies baseline,text-noise:sigma=0.3,remove:by=random:count=100

Writes DATA.tradeoff/: tradeoff.csv (one row per run), tradeoff.md, tradeoff.png (utility against
memorization, the Pareto front marked) and configs/ (what reproduces each row).
"""

from __future__ import annotations

import argparse

from mitigation.tradeoff import DEFAULT_STRATEGIES, QUICK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="laion_subset", help="img2dataset output folder")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                        help="comma-separated; each may carry options: remove:by=random:count=100, text-noise:sigma=0.3")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per strategy (error bars)")
    parser.add_argument("--quick", action="store_true",
                        help=f"subsample {QUICK['samples']} samples, {QUICK['epochs']} epochs, {QUICK['seeds']} seeds "
                             "(about 10 minutes on 2 CPU cores)")
    parser.add_argument("--samples", type=int, help="use this many samples (a fixed random subset)")
    parser.add_argument("--out", help="output folder (default: DATA.tradeoff)")
    parser.add_argument("--model", default="clipmem-tiny")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--heldout-frac", type=float, default=0.1, help="held-out split for utility")
    parser.add_argument("--scores", help="flag's scores.parquet for remove (default: DATA.clipmem/scores.parquet)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from mitigation import tradeoff_report
    from mitigation.tradeoff import tradeoff

    result = tradeoff(args.data, args.strategies, args.out, seeds=args.seeds, epochs=args.epochs, samples=args.samples,
                      quick=args.quick, model=args.model, batch_size=args.batch_size, lr=args.lr,
                      heldout_frac=args.heldout_frac, scores=args.scores, progress=not args.no_progress)
    print(tradeoff_report.markdown_table(result.rows))
    for name, path in result.paths.items():
        print(f"{name:8} {path}")
    return 0
