"""report.html: one self-contained page of flagged pairs that stays usable with thousands of them.

The rows travel as one JSON array inside the page; a small inline script builds one page of cards at a
time (filter by reason kind or noise type, sort by any score, page through). Captions reach the page
only as JSON string data and become card text through `textContent`, so markup in a caption stays text.
Thumbnails and the histogram are data URIs: the page opens from disk with no server and no network.

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

from dataio.atomic import write_text  # noqa: E402

THUMBNAIL_PX = 80
THUMBNAIL_QUALITY = 70
# An image this small in bytes and pixels costs the page no more than its re-encoded thumbnail would.
EMBED_AS_IS_BYTES = 2_500
EMBED_AS_IS_PX = 2 * THUMBNAIL_PX
PAGE_SIZE = 100
SCORE_DIGITS = 6
MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
LINT_REASON = "caption lint"
# Fields the cards show in their own places; every other number in a row is offered as a sort key.
CARD_FIELDS = {"key", "caption", "reasons", "noise", "injected", "original_caption", "flagged"}

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} table.summary td{padding:2px 10px}
.controls{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin:.8em 0}
.pager{display:flex;gap:.4em;align-items:center;margin:.8em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;background:#fafafa}
.card img{width:96px;height:96px;object-fit:contain;background:#fff;display:block;margin:auto}
.caption{font-weight:600;margin:6px 0;word-break:break-word}
.key,.noise{color:#666;font-size:.8em} .reasons{color:#a00;font-size:.85em} .scores{font-size:.8em;color:#333}
.injected{outline:3px solid #e69500}
.histogram{max-width:100%;height:auto}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("report-config").textContent);
  var rows = JSON.parse(document.getElementById("report-rows").textContent);
  var reasonFilter = document.getElementById("filter-reason");
  var noiseFilter = document.getElementById("filter-noise");
  var sortBy = document.getElementById("sort-by");
  var sortOrder = document.getElementById("sort-order");
  var grid = document.getElementById("cards");
  var page = 0;
  var visible = rows;

  rows.forEach(function (row, position) { row.rank = position; });

  function addOption(select, value, label) {
    var option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    select.appendChild(option);
  }

  function countBy(keysOf) {
    var counts = new Map();
    rows.forEach(function (row) {
      keysOf(row).forEach(function (key) { counts.set(key, (counts.get(key) || 0) + 1); });
    });
    return counts;
  }

  function fillReasonFilter() {
    var counts = countBy(function (row) { return row.kinds; });
    Array.from(counts.keys()).sort().forEach(function (kind) {
      addOption(reasonFilter, kind, kind + " (" + counts.get(kind) + ")");
    });
  }

  // "injected:*" reads the injected flag, "type:*" the noise type; "type:" is a row with no noise type.
  function noiseChoices(row) {
    var choices = [];
    if (config.has_injected) choices.push(row.injected ? "injected:yes" : "injected:no");
    if (config.has_noise) choices.push("type:" + (row.noise === null ? "" : row.noise));
    return choices;
  }

  function noiseLabel(choice) {
    if (choice === "injected:yes") return "injected (any type)";
    if (choice === "injected:no") return "not injected";
    return choice === "type:" ? "no noise type" : choice.slice("type:".length);
  }

  function fillNoiseFilter() {
    var counts = countBy(noiseChoices);
    if (counts.size === 0) { noiseFilter.parentElement.hidden = true; return; }
    Array.from(counts.keys()).sort().forEach(function (choice) {
      addOption(noiseFilter, choice, noiseLabel(choice) + " (" + counts.get(choice) + ")");
    });
  }

  function fillSortChoices() {
    config.columns.forEach(function (column, index) { addOption(sortBy, String(index), column); });
  }

  function isNumber(value) { return typeof value === "number" && isFinite(value); }

  // Missing scores go last in either direction; equal scores keep the flagged order.
  function compareBy(index, descending) {
    return function (a, b) {
      var x = a.scores[index], y = b.scores[index];
      if (!isNumber(x) || !isNumber(y)) {
        if (isNumber(x) !== isNumber(y)) return isNumber(x) ? -1 : 1;
        return a.rank - b.rank;
      }
      if (x !== y) return descending ? y - x : x - y;
      return a.rank - b.rank;
    };
  }

  function selectRows() {
    var kind = reasonFilter.value, noise = noiseFilter.value;
    var chosen = rows.filter(function (row) {
      return (kind === "" || row.kinds.indexOf(kind) >= 0) && (noise === "" || noiseChoices(row).indexOf(noise) >= 0);
    });
    if (sortBy.value === "") return chosen;
    return chosen.slice().sort(compareBy(Number(sortBy.value), sortOrder.value === "descending"));
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scoreLine(row) {
    var parts = [];
    config.shown.forEach(function (column) {
      var value = row.scores[config.columns.indexOf(column)];
      if (isNumber(value)) parts.push(column + " " + value.toFixed(3));
    });
    return parts.join(" \u00b7 ");
  }

  function card(row) {
    var node = element("div", row.injected ? "card injected" : "card");
    node.dataset.key = row.key;
    var image = element("img");
    image.alt = "";
    image.width = 96;
    image.height = 96;
    if (row.thumb) image.src = row.thumb;
    node.appendChild(image);
    node.appendChild(element("div", "caption", row.caption));
    node.appendChild(element("div", "key", "key " + row.key));
    if (row.noise !== null) node.appendChild(element("div", "noise", "noise: " + row.noise));
    node.appendChild(element("div", "reasons", row.reasons));
    node.appendChild(element("div", "scores", scoreLine(row)));
    if (row.injected) {
      var original = row.original === null ? "not recorded" : row.original;
      node.appendChild(element("div", "key truth", "injected swap; original: " + original));
    }
    return node;
  }

  function pageCount() { return Math.max(1, Math.ceil(visible.length / config.page_size)); }

  function showPage() {
    var first = page * config.page_size;
    var shown = visible.slice(first, first + config.page_size);
    var fragment = document.createDocumentFragment();
    shown.forEach(function (row) { fragment.appendChild(card(row)); });
    grid.replaceChildren(fragment);
    var status = visible.length === 0 ? "no pairs match" :
      "showing " + (first + 1) + "\u2013" + (first + shown.length) + " of " + visible.length +
      (visible.length === rows.length ? "" : " (filtered from " + rows.length + ")");
    document.querySelectorAll(".page-status").forEach(function (node) {
      node.textContent = status + ", page " + (page + 1) + " of " + pageCount();
    });
    document.querySelectorAll(".pager button").forEach(function (button) {
      var action = button.dataset.page;
      button.disabled = (action === "first" || action === "previous") ? page === 0 : page >= pageCount() - 1;
    });
  }

  function refresh() {
    visible = selectRows();
    page = 0;
    showPage();
  }

  function turnPage(event) {
    var action = event.target.dataset && event.target.dataset.page;
    if (!action) return;
    var last = pageCount() - 1;
    page = {first: 0, previous: Math.max(0, page - 1), next: Math.min(last, page + 1), last: last}[action];
    showPage();
    if (event.currentTarget.id === "pager-bottom") grid.scrollIntoView();
  }

  fillReasonFilter();
  fillNoiseFilter();
  fillSortChoices();
  [reasonFilter, noiseFilter, sortBy, sortOrder].forEach(function (control) {
    control.addEventListener("change", refresh);
  });
  document.querySelectorAll(".pager").forEach(function (pager) { pager.addEventListener("click", turnPage); });
  refresh();
})();
"""

# Only this exact script may run (its hash), images only from data URIs, nothing from the network.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(SCRIPT.encode('utf-8')).digest()).decode('ascii')}'"
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
            axis.hist(values[selected.astype(bool) & measured], bins=40, alpha=0.6, color=color, label=label,
                      density=True)
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


def render_report(flagged_rows: list, thumbnails: dict, histogram: str, summary_lines: list, score_columns: list) -> str:
    columns = sort_columns(flagged_rows, score_columns)
    rows = [page_row(row, thumbnails.get(row["key"], ""), columns) for row in flagged_rows]
    config = {
        "columns": columns,
        "shown": [c for c in score_columns if c in columns],
        "page_size": PAGE_SIZE,
        "has_noise": any("noise" in row for row in flagged_rows),
        "has_injected": any("injected" in row for row in flagged_rows),
    }
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
        "<option value='ascending'>lowest first</option></select></div>"
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
