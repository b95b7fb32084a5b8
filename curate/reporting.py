"""What `flag` writes and prints: scores.parquet, flagged.parquet, summary.json, report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from curate import flagging, report
from curate.dataset import open_dataset

SCORE_COLUMNS = ["score", "clipmem", "clipmem_raw", "clipscore", "csl", "image_mem", "text_mem"]
HISTOGRAM_COLUMNS = ["score", "clipmem", "clipscore", "csl"]


def summary(args, table, plan, config, frame: pd.DataFrame, timings: dict) -> dict:
    flagged = frame["flagged"]
    return {
        "data": str(args.data),
        "samples_readable": len(table),
        "samples_skipped": len(table.skipped),
        "skipped_examples": [list(item) for item in table.skipped[:10]],
        "scored": len(frame),
        "flagged": int(flagged.sum()),
        "settings": {
            "method": args.method, "protocol": plan.protocol, "folds": len(plan.models) if plan.protocol == "kfold" else None,
            "form": args.form, "views": args.views, "top_frac": args.top_frac, "threshold": args.threshold,
            "training": config.to_dict(), "reused_models": bool(args.reuse), "pretrained": args.pretrained,
        },
        "timings": timings,
        "models_trained": 0 if args.reuse else len(plan.models),
        "means": {
            "clipmem_raw": float(frame["clipmem_raw"].mean()),
            **flagging.modality_means(frame),
        },
        "detection": flagging.detection_report(frame, args.top_frac),
    }


def write_outputs(out: Path, frame: pd.DataFrame, summary_data: dict, table, data_path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ordered = frame.sort_values("score", ascending=False)
    _atomic_parquet(frame, out / "scores.parquet")
    _atomic_parquet(ordered[ordered["flagged"]], out / "flagged.parquet")
    _atomic_text(json.dumps(summary_data, indent=2, default=str), out / "summary.json")
    flagged_rows = ordered[ordered["flagged"]].to_dict("records")
    thumbnails = _thumbnails(data_path, {row["key"] for row in flagged_rows})
    histogram = report.histogram_uri(frame, HISTOGRAM_COLUMNS)
    report.write_report(out / "report.html", flagged_rows, thumbnails, histogram, _summary_lines(summary_data),
                        SCORE_COLUMNS)


def _thumbnails(data_path, keys: set) -> dict:
    """Image bytes straight from the dataset (the table holds resized pixels, not the stored files)."""
    dataset = open_dataset(data_path)
    return {s.key: report.thumbnail_uri(s.image, s.image_ext) for s in dataset.samples(keys=keys, verify_images=False)}


def _summary_lines(s: dict) -> list:
    settings = s["settings"]
    lines = [
        ("data", s["data"]),
        ("scored / readable / skipped", f"{s['scored']} / {s['samples_readable']} / {s['samples_skipped']}"),
        ("flagged", f"{s['flagged']} (ranking: {settings['method']}, "
                    + (f"threshold {settings['threshold']}" if settings["threshold"] is not None
                       else f"top {settings['top_frac']:.0%}") + ")"),
        ("protocol", f"{settings['protocol']}, {s['models_trained']} models trained, form {settings['form']}"),
        ("mean CLIPMem (raw)", f"{s['means']['clipmem_raw']:.4f}"),
        ("image-side / text-side memorization", f"{s['means']['image_mem']:.4f} / {s['means']['text_mem']:.4f}"),
    ]
    for name, metrics in s["detection"].items():
        lines.append((f"detection of injected swaps: {name}",
                      f"AUROC {metrics['auroc']:.3f}, precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}"))
    return lines


def format_console_summary(s: dict, out: Path) -> str:
    lines = [f"{label:38} {value}" for label, value in _summary_lines(s)]
    timings = s["timings"]
    lines.append(f"{'time':38} load {timings['load_s']} s, train {timings['train_s']} s, score {timings['score_s']} s")
    lines += [
        f"scores   {out / 'scores.parquet'}",
        f"flagged  {out / 'flagged.parquet'}",
        f"summary  {out / 'summary.json'}",
        f"report   {out / 'report.html'}",
        f"models   {out / 'models'}",
    ]
    return "\n".join(lines)


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
