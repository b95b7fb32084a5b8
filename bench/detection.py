"""Benchmark (not a test): detection of mis-captioned pairs across noise types and rates, and how well the
canaries grade it, leave one kind out.

One clean laion_subset build is shared by every cell: a fixed random subset of its pairs is copied with one
noise type injected at one rate (demo.build.inject_swaps_into, the same function `demo-data --noise` uses; plus
`unique-swap`, a kind demo-data never makes: captions that occur once swapped among themselves), then
`curate.flag` scores it with canaries of every kind planted. For every ranking: AUROC, AUPRC and precision at
the noise rate, beside the AUROC in the unique-caption stratum. Cells: the four noise types at 10 %,
cross-category and within-category also at 5 % and 40 %, unique-swap at 8 %.

Leave one kind out: each truth kind has the canary kind closest to it (CANARY_MATCH); the learned ranking and
auto are fitted again on the canaries of the OTHER kinds only (the matched kind's canaries dropped from the
table), and their true AUROC and the canaries' estimate of it are reported beside the fixed default's; the
learned ranking also as it was fitted before the likely mismatched user pairs were left out of its fit. A second
table gives each one's difference from the old default with a paired bootstrap interval over the pairs.

    python bench/detection.py [--subset 2000] [--epochs 8] [--folds 4] [--work /tmp/clipmem-bench-detection]
    python bench/detection.py --work W --rescore   # finished cells, scored again by their saved models

Writes WORK/detection.json (every figure), WORK/detection.md and WORK/loko.md (the tables the README quotes).
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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curate import trust  # noqa: E402
from curate.rankings import DEFAULT_RANKING  # noqa: E402
from dataio.atomic import write_json, write_text  # noqa: E402
from dataio.reader import open_dataset  # noqa: E402
from dataio.writer import Keep, Remove, write_dataset  # noqa: E402
from dataio.truth import TRUTH_FIELDS  # noqa: E402
from demo.build import build_demo, caption_bearing, inject_swaps_into  # noqa: E402

CELLS = [("cross-category", 0.10), ("within-category", 0.10), ("shared-keyword", 0.10), ("boilerplate", 0.10),
         ("unique-swap", 0.08), ("cross-category", 0.05), ("within-category", 0.05), ("cross-category", 0.40),
         ("within-category", 0.40)]
RANKINGS = ["combined", "combined-neighbour", "combined-csls", "neighbour", "clipscore", "csl", "clipmem", "learned",
            "random"]
# The canary kind closest to each kind of simulated noise: left out when that noise is the truth.
CANARY_MATCH = {"cross-category": "random-caption", "within-category": "image-neighbour",
                "shared-keyword": "text-neighbour", "boilerplate": "generic", "unique-swap": "random-caption"}
OLD_DEFAULT = "combined-neighbour"  # the default before the hubness-corrected alignment


def cell_name(noise: str, rate: float) -> str:
    """The cell's folder name under WORK (its flag output, frames and data share it)."""
    return f"{noise}_{int(rate * 100):02d}"


def noisy_copy(clean: Path, out: Path, keys: set, noise: str, rate: float, seed: int) -> Path:
    """The subset `keys` of the clean build with `noise` injected at `rate`, in the same format."""
    if (out / "manifest.parquet").exists():
        return out
    samples = [s for s in open_dataset(clean).samples(keys=keys, verify_images=False)]
    rows = [{**s.meta, "caption": s.caption, "captions": list(s.captions), "key": s.key} for s in samples]
    if noise == "unique-swap":
        swap_unique_captions(rows, rate, seed)
    else:
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


def swap_unique_captions(rows: list, rate: float, seed: int) -> None:
    """`rate` of the rows, all with a caption no other row has, pass their captions round in a cycle: every
    swapped caption still occurs once, so caption frequency says nothing about it."""
    import random
    from collections import Counter

    counts = Counter(" ".join(row["caption"].lower().split()) for row in rows)
    unique = [i for i, row in enumerate(rows) if counts[" ".join(row["caption"].lower().split())] == 1]
    chosen = random.Random(f"unique-swap:{seed}").sample(unique, min(len(unique), round(rate * len(rows))))
    originals = [(rows[i]["caption"], list(rows[i]["captions"]), rows[i].get("source_id")) for i in chosen]
    for position, index in enumerate(chosen):
        caption, captions, donor = originals[(position + 1) % len(chosen)]
        rows[index].update(original_caption=rows[index]["caption"], caption=caption, captions=captions,
                           swapped_from=donor, injected=True, noise="unique-swap")


def clean_build(given, work: Path, seed: int) -> Path:
    """The clean laion_subset every cell starts from: the one given, or built once into WORK/clean."""
    work.mkdir(parents=True, exist_ok=True)
    clean = Path(given) if given else work / "clean"
    if not clean.exists():
        build_demo(clean, inject_swaps=0.0, source="openclipart", seed=seed)
    return clean


def subset_keys(clean: Path, count: int, seed: int) -> set:
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


def rescore_cell(work: Path, cell: dict, seed: int) -> None:
    """A finished cell scored again with the models its run saved: every figure from today's scores."""
    data = work / cell_name(cell["noise"], cell["rate"])
    flagged = curate.flag(data, work / f"{data.name}.clipmem", reuse=True, seed=seed, top_frac=cell["rate"],
                          method=OLD_DEFAULT, progress=False)
    cell.update(figures=cell_figures(flagged.summary, cell["rate"]), detection=flagged.summary["detection"],
                canary_grades=flagged.summary["canaries"]["rankings"])
    save_frames(flagged, work / f"{data.name}.frames.parquet")
    print(f"{data.name} re-scored: " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in cell["figures"].items()),
          flush=True)


def save_frames(flagged, path: Path) -> None:
    """The cell's user rows and canary rows with every score, so `--regrade` can grade again without training."""
    frames = pd.concat([flagged.scores.assign(canary_kind=""), flagged.canaries], ignore_index=True)
    frames.drop(columns=[c for c in ("reasons",) if c in frames]).to_parquet(path)


def leave_one_kind_out(frames: pd.DataFrame, noise: str, rate: float, seed: int) -> dict:
    """The default, learned and auto rankings' true AUROC with the canaries of every kind but the one matching
    `noise`, and what those canaries estimate; the matched kind alone estimates the default as well."""
    from sklearn.metrics import roc_auc_score

    from curate.assessment import assess

    frames = frames.drop(columns=["rank_learned"])
    users = frames[frames["canary_kind"] == ""].drop(columns="canary_kind")
    truth = users["injected"].to_numpy(dtype=bool)
    canaries = frames[frames["canary_kind"] != ""]
    matched = CANARY_MATCH[noise]

    def graded(kinds: list) -> dict:
        planted = canaries[canaries["canary_kind"].isin(kinds)]
        union = pd.concat([users, planted.drop(columns="canary_kind")], ignore_index=True)
        spec = pd.DataFrame({"key": planted["key"], "kind": planted["canary_kind"]})
        result = assess(union, spec, "auto", seed)
        true = {name: float(roc_auc_score(truth, result.frame[f"rank_{name}"])) if f"rank_{name}" in result.frame
                else float("nan") for name in (OLD_DEFAULT, DEFAULT_RANKING, "learned", result.chosen)}
        true["auto"] = true[result.chosen]
        against_old = {name: paired_difference(truth, result.frame[f"rank_{name}"].to_numpy(),
                                               result.frame[f"rank_{OLD_DEFAULT}"].to_numpy(), seed)
                       for name in (DEFAULT_RANKING, "learned", result.chosen) if f"rank_{name}" in result.frame}
        against_old["auto"] = against_old[result.chosen]
        # the learned ranking as it was before the likely mismatched were left out of its fit, for comparison
        every_user_pair = trust.cross_fitted_scores(union, union["key"].isin(set(planted["key"])).to_numpy(), seed)
        true["learned_every_user_pair"] = float(roc_auc_score(truth, every_user_pair[:len(users)]))
        estimate = {name: result.summary["rankings"].get(name, {}).get("auroc", float("nan"))
                    for name in (OLD_DEFAULT, DEFAULT_RANKING, "learned")}
        estimate["auto"] = result.summary["rankings"].get(result.chosen, {}).get("auroc", float("nan"))
        # the canaries' own 95 % interval: with a few dozen of a kind it is wider than the 0.05 the estimate aims at
        estimate_ci = {name: result.summary["rankings"].get(name, {}).get("auroc_ci", [float("nan")] * 2)
                       for name in (DEFAULT_RANKING, result.chosen)}
        estimate_ci["auto"] = estimate_ci[result.chosen]
        flagged_mask = np.zeros(len(result.frame), dtype=bool)
        flagged_mask[np.argsort(-result.frame["score"].to_numpy(), kind="stable")[:int(np.ceil(rate * len(truth)))]] = True
        return {"canaries": int(len(planted)), "chosen": result.chosen, "true": true, "estimate": estimate,
                "estimate_ci": estimate_ci,
                "against_old_default": against_old,
                "precision_true": float(truth[flagged_mask].mean()),
                "precision_estimate": result.flagged_precision(flagged_mask),
                "noise_rate_estimate": result.summary.get("noise_rate_estimate")}

    others = sorted(set(canaries["canary_kind"]) - {matched})
    return {"matched_kind": matched, "all": graded(sorted(set(canaries["canary_kind"]))), "loko": graded(others),
            "matched_only": graded([matched]), "error_parts": estimate_error_parts(frames, noise)}


def estimate_error_parts(frames: pd.DataFrame, noise: str) -> dict:
    """Where the matched kind's estimate of the default misses, from the truth the bench has and a user lacks.

    The estimate grades canaries against every user pair; the truth grades the noise against the clean pairs. The
    error splits into contamination (canaries against every user pair minus against the truly clean ones: the
    pairs graded against hold the noise) and difficulty (canaries against the clean pairs minus the truth: canaries
    easier or harder to find than the noise). How canaries rank against the noise itself says which: 0.5 if they
    rank alike, which is what `trust.against_clean` assumes; the same correction with the TRUE noise share shows
    what a perfect share estimate would buy. Last, whether the truth lies within the span of the kinds' estimates."""
    column = f"rank_{DEFAULT_RANKING}"
    users = frames[frames["canary_kind"] == ""]
    noisy = users["injected"].to_numpy(dtype=bool)
    scores = users[column].to_numpy(dtype=float)
    canaries = frames[frames["canary_kind"] != ""]

    def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
        return trust.auroc_ap_of(trust.bin_sizes(np.r_[positives, negatives],
                                                 np.r_[np.ones(len(positives), bool), np.zeros(len(negatives), bool)]))[0]

    matched = canaries.loc[canaries["canary_kind"] == CANARY_MATCH[noise], column].to_numpy(dtype=float)
    true, estimate = auroc(scores[noisy], scores[~noisy]), auroc(matched, scores)
    against_clean = auroc(matched, scores[~noisy])
    by_kind = {kind: auroc(group[column].to_numpy(dtype=float), scores)
               for kind, group in canaries.groupby("canary_kind")}
    corrected = trust.against_clean(estimate, float(noisy.mean()))
    return {"true": true, "estimate": estimate, "contamination": estimate - against_clean,
            "difficulty": against_clean - true, "canaries_against_noise": auroc(matched, scores[noisy]),
            "against_clean_true_share_error": None if corrected is None else corrected - true,
            "kinds_span": [min(by_kind.values()), max(by_kind.values())],
            "true_inside_span": bool(min(by_kind.values()) <= true <= max(by_kind.values()))}


def paired_difference(truth: np.ndarray, scores: np.ndarray, baseline: np.ndarray, seed: int,
                      draws: int = 300) -> list:
    """True AUROC of `scores` minus that of `baseline` on the same pairs, with a 95 % paired bootstrap interval
    (mismatched and clean pairs resampled apart, both rankings graded on each draw). It covers which pairs were
    drawn, not another training seed: the bench's second draw (--seed 1) is the replicate for that."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, dtype=bool)
    scores, baseline = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    counts = trust.stratified_bootstrap_counts(np.random.default_rng(seed + 31), np.flatnonzero(truth),
                                               np.flatnonzero(~truth), draws, len(truth))
    difference = (trust.weighted_auroc_ap(scores, truth, counts)[0]
                  - trust.weighted_auroc_ap(baseline, truth, counts)[0])
    point = roc_auc_score(truth, scores) - roc_auc_score(truth, baseline)
    return [round(float(point), 4)] + [round(float(v), 4) for v in np.percentile(difference, [2.5, 97.5])]


def loko_markdown(results: list) -> str:
    lines = ["| noise | rate | old default | default (combined-csls) | learned (LOKO) | learned fitted against every "
             "user pair (LOKO) | auto (LOKO): chosen | estimate of auto (LOKO) | default: estimate from matched kind | "
             "estimated / true precision at the rate (LOKO) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in results:
        loko, matched = cell["loko"]["loko"], cell["loko"]["matched_only"]
        lines.append(
            f"| {cell['noise']} | {cell['rate']:.0%} | {loko['true'][OLD_DEFAULT]:.3f} | {loko['true'][DEFAULT_RANKING]:.3f} | "
            f"{loko['true']['learned']:.3f} | {loko['true']['learned_every_user_pair']:.3f} | "
            f"{loko['true']['auto']:.3f}: {loko['chosen']} | "
            f"{_estimate_cell(loko, 'auto')} | {_estimate_cell(matched, DEFAULT_RANKING)} | "
            f"{_maybe(loko['precision_estimate'])} / {loko['precision_true']:.2f} |")
    names = (OLD_DEFAULT, DEFAULT_RANKING, "learned", "learned_every_user_pair", "auto")
    true = {name: [c["loko"]["loko"]["true"][name] for c in results] for name in names}
    at_or_above = {name: sum(t >= o for t, o in zip(true[name], true[OLD_DEFAULT])) for name in names}
    lines.append("| mean (cells at or above the old default) | | " + " | ".join(
        f"{np.mean(true[name]):.3f} ({at_or_above[name]} of {len(results)})" for name in names) + " | | | |")
    lines.append("| estimate: mean abs error; within 0.05; true inside its 95 % interval; mean interval width | | | | | | | "
                 + _estimate_summary([c["loko"]["loko"] for c in results], "auto") + " | "
                 + _estimate_summary([c["loko"]["matched_only"] for c in results], DEFAULT_RANKING) + " | |")
    return "\n".join(lines)


def _estimate_cell(graded: dict, name: str) -> str:
    """The canaries' estimate with its interval and its error against the truth."""
    estimate, true = graded["estimate"][name], graded["true"][name]
    interval = graded.get("estimate_ci", {}).get(name)
    shown = f"{estimate:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    return f"{shown} (error {estimate - true:+.3f})"


def _estimate_summary(graded: list, name: str) -> str:
    errors = np.array([g["estimate"][name] - g["true"][name] for g in graded])
    text = f"{np.mean(np.abs(errors)):.3f}; {int(np.sum(np.abs(errors) <= 0.05))} of {len(errors)}"
    intervals = [g.get("estimate_ci", {}).get(name) for g in graded]
    if all(intervals):
        inside = sum(low <= g["true"][name] <= high for g, (low, high) in zip(graded, intervals))
        text += f"; {inside} of {len(errors)}; {np.mean([high - low for low, high in intervals]):.2f}"
    return text


def error_parts_markdown(results: list) -> str:
    """The matched kind's estimate of the default, its error split in two (estimate_error_parts)."""
    lines = ["| noise | rate | true | estimate (matched kind) | error | of it: contamination | of it: difficulty | "
             "canaries against the noise (0.5: alike) | error corrected with the true noise share | span of the "
             "kinds' estimates |", "|---|---|---|---|---|---|---|---|---|---|"]
    parts = [cell["loko"]["error_parts"] for cell in results]
    for cell, part in zip(results, parts):
        low, high = part["kinds_span"]
        corrected = part["against_clean_true_share_error"]
        lines.append(f"| {cell['noise']} | {cell['rate']:.0%} | {part['true']:.3f} | {part['estimate']:.3f} | "
                     f"{part['estimate'] - part['true']:+.3f} | {part['contamination']:+.3f} | "
                     f"{part['difficulty']:+.3f} | {part['canaries_against_noise']:.3f} | "
                     + ("n/a" if corrected is None else f"{corrected:+.3f}") + f" | {low:.3f}-{high:.3f}"
                     + ("" if part["true_inside_span"] else " (truth outside)") + " |")

    def mean_abs(values) -> str:
        values = np.abs([v for v in values if v is not None])
        return f"{np.mean(values):.3f} ({int(np.sum(values <= 0.05))} of {len(values)} within 0.05)"

    lines.append("| mean absolute | | | | " + mean_abs([p["estimate"] - p["true"] for p in parts]) + " | "
                 + mean_abs([p["contamination"] for p in parts]) + " | " + mean_abs([p["difficulty"] for p in parts])
                 + " | | " + mean_abs([p["against_clean_true_share_error"] for p in parts]) + " | truth inside "
                 + f"{sum(p['true_inside_span'] for p in parts)} of {len(parts)} |")
    return "\n".join(lines)


def against_old_markdown(results: list) -> str:
    """Each ranking's true AUROC minus the old default's, leave one kind out, with its paired interval; a cell
    counts as below only where the whole interval is."""
    names = (DEFAULT_RANKING, "learned", "auto")
    lines = ["| noise | rate | " + " | ".join(f"{name} - old default [95 % paired interval]" for name in names) + " |",
             "|---|---|" + "---|" * len(names)]
    below = dict.fromkeys(names, 0)
    for cell in results:
        differences = cell["loko"]["loko"]["against_old_default"]
        row = []
        for name in names:
            point, low, high = differences[name]
            below[name] += high < 0
            row.append(f"{point:+.3f} [{low:+.3f}, {high:+.3f}]")
        lines.append(f"| {cell['noise']} | {cell['rate']:.0%} | " + " | ".join(row) + " |")
    lines.append("| cells below beyond the interval | | " + " | ".join(f"{below[n]} of {len(results)}" for n in names)
                 + " |")
    return "\n".join(lines)


def _maybe(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", help="a clean laion_subset build (default: built into WORK/clean)")
    parser.add_argument("--subset", type=int, default=2000, help="pairs per cell (a fixed random subset)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/clipmem-bench-detection")
    parser.add_argument("--cells", default="", help="only these cells, e.g. cross-category:0.1,boilerplate:0.1")
    parser.add_argument("--canaries", type=float, default=0.05, help="canary fraction planted in every cell")
    parser.add_argument("--regrade", action="store_true",
                        help="grade the finished cells again from their saved frames (no training)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the finished cells again with their saved models (no training; new score columns), "
                             "then grade them again")
    parser.add_argument("--compare-without", action="store_true",
                        help="also run each cell without canaries: what planting them does to real detection")
    args = parser.parse_args()
    work = Path(args.work)
    clean = clean_build(args.clean, work, args.seed)
    keys = subset_keys(clean, args.subset, args.seed)
    wanted = [(n, float(r)) for n, r in (c.split(":") for c in args.cells.split(",") if c)] or CELLS
    results_path = work / "detection.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    if args.rescore:
        for cell in results:
            rescore_cell(work, cell, args.seed)
            write_json(results_path, results)
    if args.regrade or args.rescore:
        for cell in results:
            frames = pd.read_parquet(work / f"{cell_name(cell['noise'], cell['rate'])}.frames.parquet")
            cell["loko"] = leave_one_kind_out(frames, cell["noise"], cell["rate"], args.seed)
        write_json(results_path, results)
    done = {(r["noise"], r["rate"]) for r in results}
    for noise, rate in wanted:
        if (noise, rate) in done:
            continue
        data = noisy_copy(clean, work / cell_name(noise, rate), keys, noise, rate, args.seed)
        started = time.time()
        flagged = curate.flag(data, work / f"{data.name}.clipmem", epochs=args.epochs, folds=args.folds,
                              seed=args.seed, top_frac=rate, canaries=args.canaries, method=OLD_DEFAULT,
                              progress=False)
        cell = {"noise": noise, "rate": rate, "pairs": len(flagged.scores),
                "injected": int(flagged.scores["injected"].sum()), "wall_s": round(time.time() - started),
                "figures": cell_figures(flagged.summary, rate), "detection": flagged.summary["detection"],
                "canaries": {k: v for k, v in flagged.summary["canaries"].items() if k != "rankings"},
                "canary_grades": flagged.summary["canaries"]["rankings"],
                "loko": None}
        save_frames(flagged, work / f"{data.name}.frames.parquet")
        cell["loko"] = leave_one_kind_out(pd.read_parquet(work / f"{data.name}.frames.parquet"), noise, rate, args.seed)
        if args.compare_without:
            without = curate.flag(data, work / f"{data.name}.nocanary.clipmem", epochs=args.epochs,
                                  folds=args.folds, seed=args.seed, top_frac=rate, canaries=0, method=OLD_DEFAULT,
                                  progress=False)
            cell["without_canaries"] = cell_figures(without.summary, rate)
        results.append(cell)
        write_json(results_path, results)  # each finished cell is kept: a rerun skips it
        print(f"{noise} {rate:.0%}: " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in results[-1]["figures"].items()),
              flush=True)
    table = markdown(results)
    write_text(work / "detection.md", table + "\n")
    loko = loko_markdown(results) + "\n\n" + against_old_markdown(results) + "\n\n" + error_parts_markdown(results)
    write_text(work / "loko.md", loko + "\n")
    print(table)
    print(loko)


if __name__ == "__main__":
    main()
