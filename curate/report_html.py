"""report.html: one self-contained page of flagged pairs that stays usable with thousands of them.

The rows travel as one JSON array inside the page; an inline script (curate.report_page) builds one page
of cards at a time (filter by reason kind, noise type or decision, sort by any score, page through) and
records the reviewer's decisions, exported as decisions.csv. Captions reach the page only as JSON string
data and become card text through `textContent`, so markup in a caption stays text. Thumbnails and the
histogram are data URIs: the page opens from disk with no server and no network.

Example:
    >>> page = render_report([{"key": "000000007", "caption": "</script><b>bold</b>", "score": 0.9,
    ...                        "reasons": "low held-out alignment (0.123)"}], {}, "", [("data", "laion_subset")], ["score"])
    >>> "</script><b>" in page, "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003ebold" in page
    (False, True)
    >>> reason_kinds("high cumulative training loss (12.3); caption lint: one word; boilerplate (same caption on 7 images)")
    ['high cumulative training loss', 'caption lint']
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from numbers import Real
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from curate import decisions  # noqa: E402
from curate.report_page import SCRIPT, STYLE  # noqa: E402
from dataio.atomic import write_text  # noqa: E402

THUMBNAIL_PX = 80
THUMBNAIL_QUALITY = 70
# An image this small in bytes and pixels costs the page no more than its re-encoded thumbnail would.
EMBED_AS_IS_BYTES = 2_500
EMBED_AS_IS_PX = 2 * THUMBNAIL_PX
PAGE_SIZE = 100
RUN_ID_DIGITS = 16
SCORE_DIGITS = 6
MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
LINT_REASON = "caption lint"
# Fields the cards show in their own places; every other number in a row is offered as a sort key.
CARD_FIELDS = {"key", "caption", "reasons", "noise", "injected", "original_caption", "flagged"}

# Only this exact script may run (its hash), images only from data URIs, nothing from the network.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode('utf-8')).digest()).decode('ascii')}'"
)

REVIEW_BAR = (
    "<div class='review'><button type='button' id='review-toggle'>review one at a time (r)</button>"
    "<span class='note'>w wrong caption \u00b7 f fine \u00b7 u unsure (then the next card) \u00b7 j / k next / previous"
    " \u00b7 z or Ctrl+Z undo \u00b7 Esc back to the gallery</span>"
    "<span id='decision-counts'></span>"
    f"<button type='button' id='export-decisions'>export {decisions.FILE_NAME}</button>"
    "<label>import decisions <input type='file' id='import-decisions' accept='.csv,text/csv'></label>"
    "<span class='note'>kept in this browser for run <code id='run-id'></code></span>"
    "<span id='review-message' role='status'></span></div>"
)

PAGER = ("<nav class='pager' id='{id}'><button type='button' data-page='first'>first</button>"
         "<button type='button' data-page='previous'>previous</button>"
         "<button type='button' data-page='next'>next</button>"
         "<button type='button' data-page='last'>last</button><span class='page-status'></span></nav>")


def thumbnail_uri(image: bytes, ext: str) -> str:
    """A small JPEG for display only (the dataset is untouched); images already tiny go in as they are."""
    try:
        with Image.open(io.BytesIO(image)) as picture:
            if _tiny(image, ext, picture.size):
                return _data_uri(MIME[ext], image)
            return _data_uri("image/jpeg", _small_jpeg(picture))
    except Exception:  # a thumbnail is decoration: a damaged image shows as an empty box
        return ""


def _tiny(image: bytes, ext: str, size: tuple) -> bool:
    # Pixels count too: a blank PNG of 4000x4000 is a few bytes yet costly for the browser to decode.
    return ext in MIME and len(image) <= EMBED_AS_IS_BYTES and max(size) <= EMBED_AS_IS_PX


def _small_jpeg(picture: Image.Image) -> bytes:
    picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    picture = _on_white(picture)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _on_white(picture: Image.Image) -> Image.Image:
    """JPEG has no transparency: clip art would turn black where it was transparent."""
    if picture.mode in ("RGBA", "LA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return picture.convert("RGB")


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def histogram_uri(scores_table, columns: list, flagged_column: str = "flagged") -> str:
    """One panel per score, flagged against the rest (and injected against clean where known)."""
    columns = [c for c in columns if c in scores_table]
    figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), squeeze=False)
    for axis, column in zip(axes[0], columns):
        values = scores_table[column].astype(float)
        split = "injected" if "injected" in scores_table and scores_table["injected"].any() else flagged_column
        # a score can be missing (csl of pairs scored by inference alone); hist fails on a split that is all NaN
        measured = np.isfinite(values)
        for selected, label, color in ((~scores_table[split], f"not {split}", "#4a7bd0"),
                                       (scores_table[split], split, "#e0523a")):
            # one filled outline per histogram, not 40 bar patches: the same picture, drawn several times faster
            axis.hist(values[selected.astype(bool) & measured], bins=40, alpha=0.6, color=color, label=label,
                      density=True, histtype="stepfilled")
        axis.set_title(column)
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return _data_uri("image/png", buffer.getvalue())


def reason_kinds(reasons: str) -> list:
    """The distinct kinds of a "; "-joined reasons text: each reason's text before its first " (" or ":".

    Lint findings are themselves "; "-joined inside their "caption lint: ..." reason, which
    `flagging.reasons` puts last, so everything after it belongs to the lint kind.
    """
    kinds = []
    for reason in str(reasons or "").split("; "):
        if LINT_REASON in kinds:
            break
        kind = re.split(r" \(|:", reason, maxsplit=1)[0].strip()
        if kind and kind not in kinds:
            kinds.append(kind)
    return kinds


def sort_columns(rows: list, score_columns: list) -> list:
    """The named score columns present, then every other numeric column the rows carry."""
    numeric = []
    for row in rows:
        for name, value in row.items():
            if name not in CARD_FIELDS and name not in numeric and _is_number(value):
                numeric.append(name)
    present = [c for c in score_columns if c in numeric]
    return present + [c for c in numeric if c not in present]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _score(value):
    """A finite float rounded for the page (NaN and infinities become null: JSON has no NaN)."""
    if not _is_number(value) or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.{SCORE_DIGITS}g}")


def _text_or_none(value):
    return None if _missing(value) else str(value)


def page_row(row: dict, thumbnail: str, columns: list) -> dict:
    """What the page needs of one flagged row; scores in the order of `columns`."""
    return {
        "key": str(row["key"]),
        "caption": str(row["caption"]),
        "reasons": _text_or_none(row.get("reasons")) or "",
        "kinds": reason_kinds(_text_or_none(row.get("reasons"))),
        "noise": _text_or_none(row.get("noise")),
        "injected": bool(row.get("injected")) if not _missing(row.get("injected")) else False,
        "original": _text_or_none(row.get("original_caption")),
        "thumb": thumbnail,
        "scores": [_score(row.get(c)) for c in columns],
    }


def script_json(value) -> str:
    """JSON safe inside a <script> element: <, > and & as unicode escapes, so "</script>" cannot close it."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def run_id(rows: list) -> str:
    """What the page's saved decisions are filed under: the flagged keys, captions and scores, hashed.

    Two reports of the same flag run share it; a rerun that scores differently starts a fresh set (its
    reviewer brings earlier decisions over with the import button, which checks each caption).

    >>> run_id([{"key": "1", "caption": "a", "scores": [0.5]}]) == run_id([{"key": "1", "caption": "b", "scores": [0.5]}])
    False
    """
    identity = [[row["key"], row["caption"], row["scores"]] for row in rows]
    return hashlib.sha256(script_json(identity).encode("utf-8")).hexdigest()[:RUN_ID_DIGITS]


def page_config(columns: list, score_columns: list, flagged_rows: list, rows: list) -> dict:
    """What the page's script reads besides the rows."""
    return {
        "columns": columns,
        "shown": [c for c in score_columns if c in columns],
        "page_size": PAGE_SIZE,
        "has_noise": any("noise" in row for row in flagged_rows),
        "has_injected": any("injected" in row for row in flagged_rows),
        "run": run_id(rows),
        "decisions": list(decisions.DECISIONS),
        "decision_columns": list(decisions.COLUMNS),
        "decisions_file": decisions.FILE_NAME,
    }


def render_report(flagged_rows: list, thumbnails: dict, histogram: str, summary_lines: list, score_columns: list) -> str:
    columns = sort_columns(flagged_rows, score_columns)
    rows = [page_row(row, thumbnails.get(row["key"], ""), columns) for row in flagged_rows]
    config = page_config(columns, score_columns, flagged_rows, rows)
    summary = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(str(value))}</td></tr>" for name, value in summary_lines
    )
    histogram_html = (f"<h2>Score distributions</h2><img class='histogram' src='{html.escape(histogram)}' "
                      "alt='score histograms'>") if histogram else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">"
        f"<title>CLIPMem flag report</title><style>{STYLE}</style></head><body>"
        "<h1>Flagged image-caption pairs</h1>"
        f"<table class='summary'>{summary}</table>{histogram_html}"
        f"<h2 id='total'>{len(rows)} flagged pairs, most suspect first</h2>"
        "<p>An orange frame marks a known injected swap (ground truth recorded in the data), where there is one.</p>"
        "<div class='controls'>"
        "<label>reason <select id='filter-reason'><option value=''>any reason</option></select></label>"
        "<label>noise <select id='filter-noise'><option value=''>any</option></select></label>"
        "<label>sort by <select id='sort-by'><option value=''>most suspect first</option></select></label>"
        "<select id='sort-order' aria-label='sort order'><option value='descending'>highest first</option>"
        "<option value='ascending'>lowest first</option></select>"
        "<label>decision <select id='filter-decision'><option value=''>any</option></select></label></div>"
        f"{REVIEW_BAR}"
        f"{PAGER.format(id='pager-top')}<div class='grid' id='cards'></div>{PAGER.format(id='pager-bottom')}"
        f"<script type='application/json' id='report-config'>{script_json(config)}</script>"
        f"<script type='application/json' id='report-rows'>{script_json(rows)}</script>"
        f"<script>{SCRIPT}</script>"
        "</body></html>"
    )


def write_report(path, flagged_rows: list, thumbnails: dict, histogram: str, summary_lines: list,
                 score_columns: list) -> Path:
    """Atomic: the page appears whole or not at all."""
    path = Path(path)
    write_text(path, render_report(flagged_rows, thumbnails, histogram, summary_lines, score_columns))
    return path
