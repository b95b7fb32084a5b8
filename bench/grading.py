"""Benchmark (not a test): grading one ranking on the canaries at scale, bin counts against pair counts.

`flag` grades every ranking on the planted canaries with a 200-draw bootstrap interval. Drawn pair by pair
(trust.stratified_bootstrap_counts + trust.weighted_auroc_ap, which the detection bench still uses for paired
differences) a draw costs the number of rows; drawn as multinomial counts of the bins between positives'
scores (trust.bootstrap_auroc_ap, what grade_scores uses) it costs the number of canaries. Synthetic scores
(user pairs N(0, 1), canaries N(1.2, 1), 2 % canaries); prints seconds for both, their ratio, and the two
intervals, which should agree to the third decimal.

    python bench/grading.py [--rows 300000] [--draws 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from curate import trust  # noqa: E402


def by_pair(scores: np.ndarray, labels: np.ndarray, draws: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    at_once = max(1, min(draws, trust.WEIGHTS_AT_ONCE // len(scores)))
    aurocs = []
    for start in range(0, draws, at_once):
        counts = trust.stratified_bootstrap_counts(rng, np.flatnonzero(labels), np.flatnonzero(~labels),
                                                   min(at_once, draws - start), len(scores))
        aurocs.append(trust.weighted_auroc_ap(scores, labels, counts)[0])
    return np.concatenate(aurocs)


def by_bin(scores: np.ndarray, labels: np.ndarray, draws: int) -> np.ndarray:
    """Binning (one sort) is timed too: grade_scores does it before every ranking's draws."""
    return trust.bootstrap_auroc_ap(*trust.bin_sizes(scores, labels), np.random.default_rng(2), draws)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000, help="user pairs plus canaries")
    parser.add_argument("--draws", type=int, default=trust.BOOTSTRAP)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    canaries = max(1, args.rows // 50)
    scores = np.r_[rng.normal(0, 1, args.rows - canaries), rng.normal(1.2, 1, canaries)]
    labels = np.arange(args.rows) >= args.rows - canaries
    timed = {}
    for name, grade in (("by pair", lambda: by_pair(scores, labels, args.draws)),
                        ("by bin", lambda: by_bin(scores, labels, args.draws))):
        started = time.perf_counter()
        aurocs = grade()
        timed[name] = (time.perf_counter() - started, np.percentile(aurocs, [2.5, 97.5]))
        print(f"{name}: {timed[name][0]:.2f} s, AUROC interval [{timed[name][1][0]:.4f}, {timed[name][1][1]:.4f}]")
    print(f"{args.rows:,} rows, {canaries:,} canaries, {args.draws} draws: by bin "
          f"{timed['by pair'][0] / timed['by bin'][0]:.0f}x faster than by pair")


if __name__ == "__main__":
    main()
