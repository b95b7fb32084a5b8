"""Benchmark (not a test): flag --sample N against the full kfold run, on laion_subset with 5 % swaps.

The full run trains K models on every pair; a sample run trains them on N pairs and scores the rest by
inference (curate.sampling). Compared on the keys the sample run scored by inference alone: AUROC of its
distilled score against the full run's default ranking on the same keys, and the wall time of each run.

    python bench/sample.py [--clean WORK/clean] [--sizes 1000,2000,3000] [--epochs 8] [--work /tmp/clipmem-bench-sample]

Writes WORK/sample.json and WORK/sample.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import curate  # noqa: E402
from curate.detection import detection_metrics  # noqa: E402
from curate.rankings import DEFAULT_RANKING  # noqa: E402
from dataio.atomic import write_json, write_text  # noqa: E402
from dataio.reader import open_dataset  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from detection import clean_build, noisy_copy  # noqa: E402

RATE = 0.05


def timed_flag(data: Path, out: Path, **settings) -> tuple:
    started = time.time()
    result = curate.flag(data, out, top_frac=RATE, progress=False, **settings)
    return result, round(time.time() - started)


def auroc(frame, column: str) -> float:
    return detection_metrics(frame[column], frame["injected"], RATE)["auroc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", help="a clean laion_subset build (default: built into WORK/clean)")
    parser.add_argument("--sizes", default="1000,2000,3000")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/clipmem-bench-sample")
    parser.add_argument("--full-from", help="a finished full kfold flag folder on the same data to compare with "
                                            "(its wall time is its summary's load + train + score seconds)")
    args = parser.parse_args()
    work = Path(args.work)
    clean = clean_build(args.clean, work, args.seed)
    keys = {s.key for s in open_dataset(clean).samples(verify_images=False)}
    data = noisy_copy(clean, work / "laion_5pct", keys, "cross-category", RATE, args.seed)
    settings = {"epochs": args.epochs, "folds": args.folds, "seed": args.seed}

    if args.full_from:
        full_frame = pd.read_parquet(Path(args.full_from) / "scores.parquet")
        timings = json.loads((Path(args.full_from) / "summary.json").read_text())["timings"]
        full_s = round(timings["load_s"] + timings["train_s"] + timings["score_s"])
    else:
        full, full_s = timed_flag(data, work / "full.clipmem", **settings)
        full_frame = full.scores
    ranking = f"rank_{DEFAULT_RANKING}"  # the full run's own default ranking, recomputed from its columns
    full_scores = full_frame.set_index("key")
    rows = [{"run": "full kfold", "sample": None, "wall_s": full_s, "models_trained_on": len(full_frame),
             "auroc_all": auroc(full_frame, ranking)}]
    for size in [int(s) for s in args.sizes.split(",")]:
        result, seconds = timed_flag(data, work / f"sample{size}.clipmem", sample=size, **settings)
        inferred = result.scores[result.scores["scored_by"] == "inference"]
        same_keys = full_scores.loc[inferred["key"]].reset_index()
        rows.append({
            "run": f"--sample {size}", "sample": size, "wall_s": seconds, "models_trained_on": size,
            "auroc_all": auroc(result.scores, "score"), "inferred_keys": len(inferred),
            "auroc_inferred": auroc(inferred, "score"), "auroc_full_same_keys": auroc(same_keys, ranking),
            "auroc_inferred_clipscore": auroc(inferred, "rank_clipscore"),
            "auroc_inferred_neighbour": auroc(inferred, "rank_neighbour"),
            "time_vs_full": round(seconds / full_s, 2),
        })
        print(rows[-1], flush=True)
    write_json(work / "sample.json", rows)
    lines = ["| run | wall s | x full | AUROC, inferred keys | full run, same keys | gap | held-out alignment alone "
             "| neighbour alone |", "|---|---|---|---|---|---|---|---|",
             f"| full kfold ({len(full_frame):,} pairs) | {full_s} | 1.00 | | {rows[0]['auroc_all']:.3f} (all keys) | | | |"]
    for r in rows[1:]:
        lines.append(f"| --sample {r['sample']:,} ({r['inferred_keys']:,} inferred) | {r['wall_s']} | "
                     f"{r['time_vs_full']:.2f} | {r['auroc_inferred']:.3f} | {r['auroc_full_same_keys']:.3f} | "
                     f"{r['auroc_inferred'] - r['auroc_full_same_keys']:+.3f} | {r['auroc_inferred_clipscore']:.3f} | "
                     f"{r['auroc_inferred_neighbour']:.3f} |")
    table = "\n".join(lines)
    write_text(work / "sample.md", table + "\n")
    print(table)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
