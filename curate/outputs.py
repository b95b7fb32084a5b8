"""What `flag` writes and prints: scores.parquet, flagged.parquet, summary.json, report.html."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from curate import flagging, report_html
from dataio.atomic import write_json, write_parquet
from dataio.paths import SCORES_NAME
from dataio.reader import open_dataset

SCORE_COLUMNS = ["score", "clipmem", "clipmem_raw", "clipscore", "align_csls", "csl", "image_mem", "text_mem"]
HISTOGRAM_COLUMNS = ["score", "clipmem", "clipscore", "csl"]


def summary(data, settings: dict, table, plan, frame: pd.DataFrame, timings: dict) -> dict:
    """summary.json: counts, the settings (with the ranking actually used), timings, means, detection."""
    flagged = frame["flagged"]
    return {
        "data": str(data),
        "samples_readable": len(table),
        "samples_skipped": len(table.skipped),
        "skipped_examples": [list(item) for item in table.skipped[:10]],
        "scored": len(frame),
        "flagged": int(flagged.sum()),
        "settings": settings,
        "timings": timings,
        "models_trained": 0 if settings["reused_models"] else len(plan.models),
        "means": {
            "clipmem_raw": float(frame["clipmem_raw"].mean()),
            **flagging.modality_means(frame),
        },
        "detection": flagging.detection_report(frame, settings["top_frac"]),
    }


def write_outputs(out: Path, frame: pd.DataFrame, summary_data: dict, data_path) -> dict:
    """scores.parquet, flagged.parquet, summary.json and report.html in `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out)
    flagged = flagging.flagged_first(frame)
    write_parquet(paths["scores"], frame)
    write_parquet(paths["flagged"], flagged)
    write_json(paths["summary"], summary_data)
    thumbnails = _thumbnails(data_path, set(flagged["key"]))
    write_report(paths["report"], frame, thumbnails, _summary_lines(summary_data))
    return paths


def write_report(path: Path, frame: pd.DataFrame, thumbnails: dict, summary_lines: list) -> Path:
    """report.html: the flagged rows most suspect first; the histograms cover every scored row.

    `thumbnails` maps a key to its image as a data URI (`report_html.thumbnail_uri`).
    """
    histogram = report_html.histogram_uri(frame, HISTOGRAM_COLUMNS)
    flagged_rows = flagging.flagged_first(frame).to_dict("records")
    return report_html.write_report(path, flagged_rows, thumbnails, histogram, summary_lines, SCORE_COLUMNS)


def output_paths(out: Path) -> dict:
    out = Path(out)
    return {"scores": out / SCORES_NAME, "flagged": out / "flagged.parquet", "summary": out / "summary.json",
            "report": out / "report.html", "models": out / "models"}


def _thumbnails(data_path, keys: set) -> dict:
    """Thumbnails from the stored image bytes (the table holds resized pixels, not the stored files)."""
    dataset = open_dataset(data_path)
    return {s.key: report_html.thumbnail_uri(s.image, s.image_ext) for s in dataset.samples(keys=keys, verify_images=False)}


def _summary_lines(s: dict) -> list:
    settings = s["settings"]
    lines = [
        ("data", s["data"]),
        ("scored / readable / skipped", f"{s['scored']} / {s['samples_readable']} / {s['samples_skipped']}"),
        ("flagged", f"{s['flagged']} (ranking: {settings.get('method_used', settings['method'])}, "
                    + (f"threshold {settings['threshold']}" if settings["threshold"] is not None
                       else f"top {settings['top_frac']:.0%}") + ")"),
        ("protocol", f"{settings['protocol']}, {s['models_trained']} models trained, form {settings['form']}"),
        ("scored in sample / by inference", f"{s.get('scored_by', {}).get('in-sample', 0)} / "
                                            f"{s.get('scored_by', {}).get('inference', 0)}"),
        ("mean CLIPMem (raw)", f"{s['means']['clipmem_raw']:.4f}"),
        ("image-side / text-side memorization", f"{_side(s['means']['image_mem'], '2+ image views')} / "
                                                f"{_side(s['means']['text_mem'], '2+ caption views')}"),
    ]
    lines += _canary_lines(s.get("canaries"))
    widest = max((m.get("pairs", 0) for m in s["detection"].values()), default=0)
    for name, metrics in s["detection"].items():
        subset = f" (the {metrics['pairs']} pairs it scores)" if metrics.get("pairs", widest) < widest else ""
        lines.append((f"detection of injected swaps: {name}",
                      f"AUROC {metrics['auroc']:.3f}, precision {metrics['precision']:.2f}, "
                      f"recall {metrics['recall']:.2f}{subset}"))
    return lines


# Measured by bench/detection.py (docs/flagging.md): how far the canary-based precision estimate can be trusted.
PRECISION_CAVEAT = "rough and mostly low: on the detection bench it ran 0.48 below to 0.33 above the true precision"


def _canary_lines(canaries: dict | None) -> list:
    """How far the flags can be trusted: the chosen ranking's grade on the canaries, the estimated precision of the
    flagged set, the other rankings' grades, and every warning."""
    if not canaries or not canaries["count"]:
        return [("canaries", "none planted: the flags are not graded (--canaries 0)")] if canaries is not None else []
    kinds = ", ".join(f"{kind} {n}" for kind, n in canaries["by_kind"].items())
    lines = [("canaries", f"{canaries['count']} planted ({kinds}), trained on, kept out of every output")]
    grade = canaries["rankings"].get(canaries["chosen"])
    if grade is not None:
        chosen = canaries["chosen"] + (" (auto)" if canaries["method_requested"] == "auto" else "")
        lines.append(("estimated detection (canaries)",
                      f"{chosen}: AUROC {grade['auroc']:.3f} [{grade['auroc_ci'][0]:.3f}, {grade['auroc_ci'][1]:.3f}], "
                      f"AP {grade['ap']:.3f} [{grade['ap_ci'][0]:.3f}, {grade['ap_ci'][1]:.3f}]" +
                      (f"; {grade['auroc_against_clean']:.3f} against the pairs estimated clean"
                       if grade.get("auroc_against_clean") is not None else "")))
        by_kind = sorted(((auroc, kind) for kind, auroc in grade.get("auroc_by_kind", {}).items()), reverse=True)
        if len(by_kind) > 1:
            # the one figure above averages the kinds; on the detection bench the truth sat nearer the kind the
            # noise resembled, so the spread says how much hangs on what the data's mistakes are like
            lines.append(("by kind of canary", ", ".join(f"{kind} {auroc:.3f}" for auroc, kind in by_kind) +
                          ": mismatches like the hardest kind are found about that well"))
        precision = canaries.get("flagged_precision_estimate")
        rate = canaries.get("noise_rate_estimate")
        lines.append(("estimated precision of the flags", "n/a" if precision is None else
                      f"{precision:.2f} (noise rate estimated at " + ("n/a" if rate is None else f"{rate:.1%}") +
                      f"); {PRECISION_CAVEAT}"))
        if canaries.get("auto_reason"):
            lines.append(("why auto chose it", canaries["auto_reason"]))
        if canaries["chosen"] == "learned" and canaries.get("learned_from") == "canaries":
            lines.append(("learned ranking", f"fitted on canaries against the user's pairs, less the "
                          f"{canaries.get('learned_left_out', 0)} the default finds most suspect (likely mismatched)"))
        others = sorted(((g["auroc"], name) for name, g in canaries["rankings"].items()), reverse=True)
        lines.append(("canary AUROC of every ranking", ", ".join(f"{name} {auroc:.3f}" for auroc, name in others)))
    lines += [("warning", text) for text in canaries["warnings"]]
    return lines


def _side(value: float, needs: str) -> str:
    """Agreement between views is undefined with one view: say what it needs rather than print nan."""
    return f"n/a (needs {needs})" if value != value else f"{value:.4f}"


def format_console_summary(s: dict, out: Path) -> str:
    lines = [f"{label:38} {value}" for label, value in _summary_lines(s)]
    timings = s["timings"]
    lines.append(f"{'time':38} load {timings['load_s']} s, train {timings['train_s']} s, score {timings['score_s']} s")
    lines += [f"{name:8} {path}" for name, path in output_paths(out).items()]
    return "\n".join(lines)

