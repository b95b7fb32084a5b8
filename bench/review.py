"""Benchmark (not a test): what reviewing the top flags and re-ranking with `flag --labels` buys.

A simulated reviewer labels the top R flags of the default ranking by the injected truth (wrong caption or fine);
the learned ranking is fitted again on those labels beside the canaries (curate.assessment.assess with
decisions, as `flag --reuse --labels` does) and ranks the unreviewed rest. Reported per cell and R: precision of
the next 100 flags and AUROC over the unreviewed pairs, re-ranked against not re-ranked (the default's order), and re-ranked from the reviews alone (no canaries).
Needs no training: it reads the frames bench/detection.py saved (WORK/<cell>.frames.parquet).

    python bench/review.py [--work /tmp/clipmem-bench-detection] [--reviews 50,100,200]

Writes WORK/review.md and WORK/review.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from curate.assessment import assess  # noqa: E402
from dataio.atomic import write_json, write_text  # noqa: E402

CELLS = ["cross-category_10", "within-category_10", "shared-keyword_10"]
DEFAULT = "combined-neighbour"
NEXT = 100
ARMS = ("not re-ranked", "re-ranked", "reviews only")


def simulate(frames: pd.DataFrame, reviews: int, seed: int) -> dict:
    frames = frames.drop(columns=["rank_learned"])
    users = frames[frames["canary_kind"] == ""].drop(columns="canary_kind").reset_index(drop=True)
    canaries = frames[frames["canary_kind"] != ""]
    truth = users["injected"].to_numpy(dtype=bool)
    order = np.argsort(-users[f"rank_{DEFAULT}"].to_numpy(), kind="stable")
    top = order[:reviews]
    decisions = pd.DataFrame({"key": users["key"].to_numpy()[top],
                              "decision": np.where(truth[top], "wrong caption", "fine")})
    union = pd.concat([users, canaries.drop(columns="canary_kind")], ignore_index=True)
    spec = pd.DataFrame({"key": canaries["key"], "kind": canaries["canary_kind"]})
    result = assess(union, spec, "learned", seed, decisions=decisions)
    alone = assess(users.copy(), spec.iloc[:0], "learned", seed, decisions=decisions)
    unreviewed = np.ones(len(users), dtype=bool)
    unreviewed[top] = False
    rest_truth = truth[unreviewed]
    figures = {}
    for name, scores in (("not re-ranked", users[f"rank_{DEFAULT}"].to_numpy()),
                         ("re-ranked", result.frame["rank_learned"].to_numpy()),
                         ("reviews only", alone.frame["rank_learned"].to_numpy())):
        rest = scores[unreviewed]
        nxt = np.argsort(-rest, kind="stable")[:NEXT]
        figures[name] = {"next_precision": float(rest_truth[nxt].mean()),
                         "auroc_rest": float(roc_auc_score(rest_truth, rest))}
    return {"reviews": reviews, "wrong_in_reviews": int(truth[top].sum()), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/clipmem-bench-detection")
    parser.add_argument("--reviews", default="50,100,200")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(args.work)
    results = []
    for cell in CELLS:
        path = work / f"{cell}.frames.parquet"
        if not path.exists():
            print(f"{path}: missing; run bench/detection.py first", file=sys.stderr)
            continue
        frames = pd.read_parquet(path)
        for reviews in (int(r) for r in args.reviews.split(",")):
            results.append({"cell": cell, **simulate(frames, reviews, args.seed)})
    lines = ["| noise | reviewed (wrong) | next 100 precision: not re-ranked / re-ranked / reviews only | AUROC on "
             "the unreviewed: not re-ranked / re-ranked / reviews only |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['cell']} | {r['reviews']} ({r['wrong_in_reviews']}) | "
                     + " / ".join(f"{r[k]['next_precision']:.2f}" for k in ARMS) + " | "
                     + " / ".join(f"{r[k]['auroc_rest']:.3f}" for k in ARMS) + " |")
    write_json(work / "review.json", results)
    write_text(work / "review.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
