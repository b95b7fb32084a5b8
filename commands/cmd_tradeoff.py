"""retrain under each strategy and report utility against memorization, with a verdict; or the removal curve

    python cli.py tradeoff --data laion_subset --quick
    python cli.py tradeoff --data laion_subset --strategies baseline,text-aug,multi-caption,text-noise,remove
    python cli.py tradeoff --strategies baseline,text-noise:sigma=0.3,remove:by=random:count=100,multi-caption+text-aug
    python cli.py tradeoff --data laion_subset --curve --curve-counts 0,50,100,200,400,800,1600

Writes DATA.tradeoff/: tradeoff.csv (one row per finished run, written as each finishes), tradeoff.md
(runs, paired comparisons against the same-seed baseline, each strategy and metric a gain, loss, no change or
inconclusive against --min-effect, the minimum detectable effect, a verdict), tradeoff.png
(utility against memorization, the Pareto front marked), configs/ and clipmem/ (per run). With --curve:
removal_curve.csv and removal_curve.png instead. Strategies, options and the scores file are checked
before any training; a rerun with the same settings skips the runs already in the csv.
"""

from __future__ import annotations

import argparse

from mitigation.tradeoff import DEFAULT_STRATEGIES
from mitigation.tradeoff.curve import DEFAULT_COUNTS, DEFAULT_RANKINGS
from mitigation.tradeoff.experiment import EVAL_FRAC, EVAL_MAX, PROBE_FOLDS
from mitigation.tradeoff.session import QUICK
from mitigation.tradeoff.stats import EFFECTS

DOWNSTREAM_SHAPES = 800
# Not a seed any synthetic dataset of the tests or the demo uses: these drawings are new to every model.
DOWNSTREAM_SEED = 90210


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="laion_subset", help="img2dataset output folder")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                        help="comma-separated; each may carry options (remove:by=random:count=100, text-noise:sigma=0.3) "
                             "and names joined by + combine (multi-caption+text-aug)")
    parser.add_argument("--seeds",
                        help="training seeds per strategy (default 3), each strategy compared with the baseline of the "
                             "same seed; or auto: 3 seeds, then one more seed at a time for the baseline and every "
                             "strategy with an inconclusive outcome, until none is left, --max-seeds or "
                             "--budget-minutes (tests then run at a level corrected for the repeated looks); "
                             "with --curve, models per point (default 1)")
    parser.add_argument("--max-seeds", type=int, help="with --seeds auto: the most seeds per strategy (default 10)")
    parser.add_argument("--budget-minutes", type=float,
                        help="with --seeds auto: start no round that would end after this many minutes of training "
                             "(estimated from the runs so far); what stayed inconclusive is reported")
    parser.add_argument("--quick", action="store_true",
                        help=f"train on {QUICK['samples']} samples, {QUICK['epochs']} epochs, {QUICK['seeds']} seeds "
                             "(about 15 minutes on 2 CPU cores for the default strategies)")
    parser.add_argument("--samples", type=int, help="train on this many samples (a fixed random subset of the pool)")
    parser.add_argument("--out", help="output folder; when not given: DATA.tradeoff")
    parser.add_argument("--model", default="clipmem-tiny")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-size", type=int, default=EVAL_MAX,
                        help="evaluation split: about this many pairs or --eval-frac of the data, whichever is smaller; "
                             "no run trains on it, injected pairs are left out of it")
    parser.add_argument("--eval-frac", type=float, default=EVAL_FRAC)
    parser.add_argument("--probe-folds", type=int, default=PROBE_FOLDS, help="folds of the cross-validated linear probes")
    parser.add_argument("--downstream", type=int, default=DOWNSTREAM_SHAPES,
                        help="drawn shapes (demo.synthetic) for a downstream linear probe on images no run saw; 0: none")
    parser.add_argument("--scores", help="flag's scores.parquet for remove and --curve "
                                         "(when not given: DATA.clipmem/scores.parquet)")
    parser.add_argument("--min-effect", metavar="METRIC=V[,...]", default="",
                        help="the smallest change that matters per metric (defaults: "
                             + ", ".join(f"{m}={v:g}" for m, v in EFFECTS.items())
                             + "; memorization as a fraction of the baseline's mean); an interval inside +-V is "
                               "no change, and a strategy is recommended only where every utility loss of V is "
                               "ruled out")
    parser.add_argument("--curve", action="store_true",
                        help="the removal curve instead of the strategies: one model per (ranking, count), utility only, "
                             "on the training pool minus the top COUNT by the ranking")
    parser.add_argument("--curve-counts", default=",".join(map(str, DEFAULT_COUNTS)), help="with --curve")
    parser.add_argument("--curve-rankings", default=",".join(DEFAULT_RANKINGS), help="with --curve")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dataio.errors import UsageError
    from mitigation.tradeoff import report, tradeoff
    import pandas as pd

    from mitigation.tradeoff.curve import PLOT_UTILITY, curve_table, measured_metrics, removal_curve
    from mitigation.tradeoff.trend import trend_table

    common = dict(epochs=args.epochs, samples=args.samples, quick=args.quick, model=args.model,
                  batch_size=args.batch_size, lr=args.lr, eval_max=args.eval_size, eval_frac=args.eval_frac,
                  probe_folds=args.probe_folds, scores=args.scores, downstream=downstream_items(args.downstream),
                  progress=not args.no_progress)
    if args.curve:
        if args.seeds is not None:
            common["seeds"] = whole_seeds(args.seeds)
        if args.max_seeds is not None or args.budget_minutes is not None:
            raise UsageError("--max-seeds and --budget-minutes go with --seeds auto, which --curve does not take")
        try:
            counts = [int(c) for c in args.curve_counts.split(",") if c.strip()]
        except ValueError:
            raise UsageError(f"--curve-counts must be comma-separated whole numbers, got {args.curve_counts!r}") from None
        rankings = [r.strip() for r in args.curve_rankings.split(",") if r.strip()]
        result = removal_curve(args.data, args.out, counts=counts, rankings=rankings, **common)
        if result.left_out:
            print(f"left out counts {result.left_out}: they would leave fewer than two batches of training pairs")
        print(curve_table(result.rows))
        print()
        print(trend_table(result.rows, measured_metrics(pd.DataFrame(result.rows)), PLOT_UTILITY))
    else:
        effects = parse_effects(args.min_effect)
        if args.seeds is not None:
            common["seeds"] = args.seeds
        result = tradeoff(args.data, args.strategies, args.out, min_effects=effects, max_seeds=args.max_seeds,
                          budget_minutes=args.budget_minutes, **common)
        print(report.runs_table(result.rows))
        print()
        print(report.paired_table(result.rows, result.effects, result.settings.get("alpha", 0.05)))
        if result.stopping:
            print()
            print(result.stopping.sentence())
    for name, path in result.paths.items():
        print(f"{name:8} {path}")
    return 0


def whole_seeds(text: str) -> int:
    from dataio.errors import UsageError

    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--seeds with --curve is a whole number (models per point), got {text!r}") from None


def parse_effects(text: str) -> dict:
    """'linear_probe_acc=0.02,memorization=0.2' -> {name: value}; names and values are checked by the trade-off.

    >>> parse_effects("linear_probe_acc=0.02, memorization=0.2")
    {'linear_probe_acc': 0.02, 'memorization': 0.2}
    """
    from dataio.errors import UsageError

    effects = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = item.partition("=")
        try:
            effects[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--min-effect {item!r}: give METRIC=VALUE, e.g. linear_probe_acc=0.02")
    return effects


def downstream_items(count: int):
    """The downstream probe's images: drawn shapes, labeled by shape, generated lazily (nothing until used)."""
    if count <= 0:
        return None
    from demo.synthetic import generate

    return generate(count, seed=DOWNSTREAM_SEED, size=64)
