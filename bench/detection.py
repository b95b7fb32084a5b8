"""Benchmark (not a test): detection of mis-captioned pairs across noise types and rates.

One clean laion_subset build is shared by every cell: a fixed random subset of its pairs is copied with one
noise type injected at one rate (demo.build.inject_swaps_into, the same function `demo-data --noise` uses),
then `curate.flag` scores it. For every ranking: AUROC, AUPRC and precision at the noise rate, beside the
AUROC in the unique-caption stratum. Cells: the four noise types at 10 %, cross-category and
within-category also at 5 % and 40 %.

    python bench/detection.py [--subset 2000] [--epochs 8] [--folds 4] [--work /tmp/clipmem-bench-detection]

Writes WORK/detection.json (every figure) and WORK/detection.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import curate  # noqa: E402
from dataio.atomic import write_json, write_text  # noqa: E402
from dataio.reader import open_dataset  # noqa: E402
from dataio.writer import Keep, Remove, write_dataset  # noqa: E402
from dataio.truth import TRUTH_FIELDS  # noqa: E402
from demo.build import build_demo, caption_bearing, inject_swaps_into  # noqa: E402

CELLS = [("cross-category", 0.10), ("within-category", 0.10), ("shared-keyword", 0.10), ("boilerplate", 0.10),
         ("cross-category", 0.05), ("within-category", 0.05), ("cross-category", 0.40), ("within-category", 0.40)]
RANKINGS = ["combined", "combined-neighbour", "neighbour", "clipscore", "csl", "clipmem", "random"]


def noisy_copy(clean: Path, out: Path, keys: set, noise: str, rate: float, seed: int) -> Path:
    """The subset `keys` of the clean build with `noise` injected at `rate`, in the same format."""
    if (out / "manifest.parquet").exists():
        return out
    samples = [s for s in open_dataset(clean).samples(keys=keys, verify_images=False)]
    rows = [{**s.meta, "caption": s.caption, "captions": list(s.captions), "key": s.key} for s in samples]
    inject_swaps_into(rows, rate, seed, noise)
    changed = {row["key"]: row for row in rows if row.get("injected")}

    def decide(sample):
        if sample.key not in keys:
            return Remove("outside the benchmark subset")
        row = changed.get(sample.key)
        if row is None:
            return Keep()
        # every caption-bearing field, not only the captions: a title left behind would hold the truth
        fields = [name for name in caption_bearing(row) if name not in ("caption", "captions")]
        return Keep(caption=row["caption"], captions=row["captions"],
                    meta_update={field: row.get(field) for field in fields + list(TRUTH_FIELDS)})

    write_dataset(open_dataset(clean), out, decide, overwrite=True, progress=False, verify_images=False)
    return out


def clean_build(given, work: Path, seed: int) -> Path:
    """The clean laion_subset every cell starts from: the one given, or built once into WORK/clean."""
    work.mkdir(parents=True, exist_ok=True)
    clean = Path(given) if given else work / "clean"
    if not clean.exists():
        build_demo(clean, inject_swaps=0.0, source="openclipart", seed=seed)
    return clean


def subset_keys(clean: Path, count: int, seed: int) -> set:
    import numpy as np

    keys = sorted(s.key for s in open_dataset(clean).samples(verify_images=False))
    chosen = np.random.default_rng(seed).choice(len(keys), size=min(count, len(keys)), replace=False)
    return {keys[i] for i in chosen}


def cell_figures(summary: dict, rate: float) -> dict:
    figures = {}
    for name in RANKINGS:
        entry = summary["detection"].get(name)
        if entry is None:
            continue
        figures[name] = {"auroc": entry["auroc"], "auprc": entry["auprc"], "precision": entry["precision"],
                         "auroc_unique": entry.get("auroc_by_caption_repeats", {}).get("unique", float("nan"))}
    return figures


def markdown(results: list) -> str:
    lines = ["| noise | rate | " + " | ".join(RANKINGS) + " |", "|---|---|" + "---|" * len(RANKINGS)]
    for cell in results:
        cells = []
        for name in RANKINGS:
            f = cell["figures"].get(name)
            cells.append("" if f is None else f"{f['auroc']:.3f} / {f['auprc']:.2f} / {f['precision']:.2f} "
                                              f"({f['auroc_unique']:.3f})")
        lines.append(f"| {cell['noise']} | {cell['rate']:.0%} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Each cell: AUROC / AUPRC / precision at the noise rate (AUROC among pairs whose caption is unique).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", help="a clean laion_subset build (default: built into WORK/clean)")
    parser.add_argument("--subset", type=int, default=2000, help="pairs per cell (a fixed random subset)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/clipmem-bench-detection")
    parser.add_argument("--cells", default="", help="only these cells, e.g. cross-category:0.1,boilerplate:0.1")
    args = parser.parse_args()
    work = Path(args.work)
    clean = clean_build(args.clean, work, args.seed)
    keys = subset_keys(clean, args.subset, args.seed)
    wanted = [(n, float(r)) for n, r in (c.split(":") for c in args.cells.split(",") if c)] or CELLS
    results_path = work / "detection.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["noise"], r["rate"]) for r in results}
    for noise, rate in wanted:
        if (noise, rate) in done:
            continue
        data = noisy_copy(clean, work / f"{noise}_{int(rate * 100):02d}", keys, noise, rate, args.seed)
        started = time.time()
        flagged = curate.flag(data, work / f"{data.name}.clipmem", epochs=args.epochs, folds=args.folds,
                              seed=args.seed, top_frac=rate, progress=False)
        results.append({"noise": noise, "rate": rate, "pairs": len(flagged.scores),
                        "injected": int(flagged.scores["injected"].sum()), "wall_s": round(time.time() - started),
                        "figures": cell_figures(flagged.summary, rate), "detection": flagged.summary["detection"]})
        write_json(results_path, results)  # each finished cell is kept: a rerun skips it
        print(f"{noise} {rate:.0%}: " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in results[-1]["figures"].items()),
              flush=True)
    table = markdown(results)
    write_text(work / "detection.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
