"""Benchmark (not a test): how well each score finds the injected caption swaps of laion_subset, and
what each protocol costs in training.

For every score: AUROC and precision among the top 5 %, overall, by how many images carry the caption
(1, 2-9, 10-99, 100+) and by noise type; then the cost (models trained, wall time) of kfold against the
paper protocol and against the cumulative sample loss of one training run on all the data (csl alone,
Ravikumar et al. 2025).

    python bench/flag.py [--data laion_subset] [--epochs 10] [--folds 4] [--work /tmp/clipmem-bench-flag]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import curate  # noqa: E402
from curate.detection import detection_metrics  # noqa: E402
from curate.flagging import CAPTION_REPEAT_STRATA  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import load_table  # noqa: E402
from train.loop import train_clip  # noqa: E402


def run_flag(data: str, out: Path, **settings) -> dict:
    started = time.time()
    summary = curate.flag(data, out, **settings).summary
    summary["wall_s"] = round(time.time() - started, 1)
    return summary


def csl_alone(data: str, epochs: int, seed: int) -> dict:
    """One training run on every key; the per-sample losses it records are the whole score."""
    table = load_table(data)
    started = time.time()
    result = train_clip(table, table.keys, TrainConfig(epochs=epochs, seed=seed))
    seconds = time.time() - started
    csl = result.csl()
    injected = [bool(m.get("injected")) for m in table.meta]
    metrics = detection_metrics([csl[k] for k in table.keys], injected, 0.05)
    return {"wall_s": round(seconds, 1), "models_trained": 1, "scored": len(table), "metrics": metrics}


def print_detection(title: str, detection: dict) -> None:
    """Overall figures, then AUROC per caption-repeat stratum and per noise type ('-': stratum lacks a class)."""
    strata = [label for label, _, _ in CAPTION_REPEAT_STRATA]
    noise_types = sorted({kind for m in detection.values() for kind in m.get("auroc_by_noise", {})})
    print(f"\n{title}")
    print(f"{'':29}AUROC by how many images carry the caption" + ("; by noise type" if noise_types else ""))
    print(f"{'score':12}{'AUROC':>8}{'prec@5%':>9}{'recall':>8}"
          + "".join(f"{label:>8}" for label in strata) + "".join(f"{kind:>17}" for kind in noise_types))
    for name, m in detection.items():
        by_repeats, by_noise = m.get("auroc_by_caption_repeats", {}), m.get("auroc_by_noise", {})
        print(f"{name:12}{m['auroc']:8.3f}{m['precision']:9.3f}{m['recall']:8.3f}"
              + "".join(_cell(by_repeats.get(label), 8) for label in strata)
              + "".join(_cell(by_noise.get(kind), 17) for kind in noise_types))


def _cell(value, width: int) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "laion_subset"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/clipmem-bench-flag")
    args = parser.parse_args()
    work = Path(args.work)
    kfold = run_flag(args.data, work / "kfold", epochs=args.epochs, seed=args.seed, folds=args.folds)
    paper = run_flag(args.data, work / "paper", epochs=args.epochs, seed=args.seed, protocol="paper")
    alone = csl_alone(args.data, args.epochs, args.seed)

    print_detection(f"kfold, K={args.folds}: every score on all {kfold['scored']} samples", kfold["detection"])
    print_detection(f"paper protocol: candidates only ({paper['scored']} samples)", paper["detection"])
    m = alone["metrics"]
    print(f"\ncsl alone (one run on all data): AUROC {m['auroc']:.3f}, precision@5% {m['precision']:.3f}")

    print(f"\n{'protocol':22}{'models':>7}{'train s':>9}{'wall s':>8}{'scored':>8}{'% scored':>9}")
    readable = kfold["samples_readable"]
    for name, s in (("kfold", kfold), ("paper", paper)):
        print(f"{name:22}{s['models_trained']:7d}{s['timings']['train_s']:9.0f}{s['wall_s']:8.0f}"
              f"{s['scored']:8d}{100 * s['scored'] / readable:8.0f}%")
    print(f"{'csl alone':22}{1:7d}{alone['wall_s']:9.0f}{alone['wall_s']:8.0f}{alone['scored']:8d}"
          f"{100 * alone['scored'] / readable:8.0f}%")


if __name__ == "__main__":
    main()
