"""report.html: a self-contained gallery of flagged pairs (thumbnail, escaped caption, scores, reasons)
with score histograms. Images are embedded as data URIs so the page opens from disk with no server.

Example:
    >>> page = render_report([{"key": "000000007", "caption": "<b>bold</b> claim", "score": 0.9}], {}, "",
    ...                      [("data", "laion_subset")], ["score"])
    >>> "&lt;b&gt;bold&lt;/b&gt; claim" in page and "<b>bold" not in page
    True
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from dataio.atomic import write_text  # noqa: E402

THUMBNAIL_PX = 128
EMBED_AS_IS_BYTES = 24_000
MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} table.summary td{padding:2px 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;background:#fafafa}
.card img{width:128px;height:128px;object-fit:contain;background:#fff;display:block;margin:auto}
.caption{font-weight:600;margin:6px 0;word-break:break-word}
.key{color:#666;font-size:.8em} .reasons{color:#a00;font-size:.85em} .scores{font-size:.8em;color:#333}
.injected{outline:3px solid #e69500}
.histogram{max-width:100%;height:auto}
"""


def thumbnail_uri(image: bytes, ext: str) -> str:
    """Small images go in as they are; large ones are shrunk for display only (the dataset is untouched)."""
    if len(image) <= EMBED_AS_IS_BYTES and ext in MIME:
        return f"data:{MIME[ext]};base64,{base64.b64encode(image).decode('ascii')}"
    try:
        with Image.open(io.BytesIO(image)) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=85)
    except Exception:  # a thumbnail is decoration: a damaged image shows as an empty box
        return ""
    return f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def histogram_uri(scores_table, columns: list, flagged_column: str = "flagged") -> str:
    """One panel per score, flagged against the rest (and injected against clean where known)."""
    columns = [c for c in columns if c in scores_table]
    figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), squeeze=False)
    for axis, column in zip(axes[0], columns):
        values = scores_table[column].astype(float)
        split = "injected" if "injected" in scores_table and scores_table["injected"].any() else flagged_column
        for selected, label, color in ((~scores_table[split], f"not {split}", "#4a7bd0"),
                                       (scores_table[split], split, "#e0523a")):
            axis.hist(values[selected.astype(bool)], bins=40, alpha=0.6, color=color, label=label, density=True)
        axis.set_title(column)
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _card(row: dict, thumbnail: str, score_columns: list) -> str:
    scores = " · ".join(f"{html.escape(c)} {row[c]:.3f}" for c in score_columns if c in row and row[c] == row[c])
    injected = " injected" if row.get("injected") else ""
    truth = f"<div class='key'>injected swap; original: {html.escape(str(row.get('original_caption', '')))}</div>" if injected else ""
    return (
        f"<div class='card{injected}'>"
        f"<img src='{thumbnail}' alt=''>"
        f"<div class='caption'>{html.escape(str(row['caption']))}</div>"
        f"<div class='key'>key {html.escape(str(row['key']))}</div>"
        f"<div class='reasons'>{html.escape(str(row.get('reasons', '')))}</div>"
        f"<div class='scores'>{scores}</div>{truth}</div>"
    )


def render_report(flagged_rows: list, thumbnails: dict, histogram: str, summary_lines: list, score_columns: list) -> str:
    cards = "\n".join(_card(row, thumbnails.get(row["key"], ""), score_columns) for row in flagged_rows)
    summary = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(str(value))}</td></tr>" for name, value in summary_lines
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CLIPMem flag report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>Flagged image-caption pairs</h1>"
        f"<table class='summary'>{summary}</table>"
        f"<h2>Score distributions</h2><img class='histogram' src='{histogram}' alt='score histograms'>"
        f"<h2>{len(flagged_rows)} flagged pairs, most suspect first</h2>"
        "<p>An orange frame marks a known injected swap (ground truth recorded in the data), where there is one.</p>"
        f"<div class='grid'>{cards}</div>"
        "</body></html>"
    )


def write_report(path, flagged_rows: list, thumbnails: dict, histogram: str, summary_lines: list,
                 score_columns: list) -> Path:
    """Atomic: the page appears whole or not at all."""
    path = Path(path)
    write_text(path, render_report(flagged_rows, thumbnails, histogram, summary_lines, score_columns))
    return path
