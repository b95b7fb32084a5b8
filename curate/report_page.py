"""The browser side of report.html: its style sheet and its one script (gallery and review).

The script builds one page of cards at a time from the rows' JSON (filter by reason kind, noise type and
decision; sort by any score; page through) and records a reviewer's decisions: a click on a card's
buttons, or review mode, which walks the current filter and sort one card at a time (w / f / u decide
and move on, j / k move, z or Ctrl+Z undoes). Decisions are kept in the browser's localStorage under the
run's id, so a reload or a reopened file finds them, and leave as decisions.csv (curate.decisions) by a
download made in the page; importing such a file restores them. Captions become text only through
`textContent`, and the page asks nothing of a server: it works opened from disk.
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} table.summary td{padding:2px 10px}
.controls{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin:.8em 0}
.pager{display:flex;gap:.4em;align-items:center;margin:.8em 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px}
.grid.reviewing{grid-template-columns:minmax(260px,420px)}
.grid.reviewing .card img{width:256px;height:256px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;background:#fafafa}
.card img{width:96px;height:96px;object-fit:contain;background:#fff;display:block;margin:auto}
.caption{font-weight:600;margin:6px 0;word-break:break-word}
.key,.noise{color:#666;font-size:.8em} .reasons{color:#a00;font-size:.85em} .scores{font-size:.8em;color:#333}
.injected{outline:3px solid #e69500}
.card[data-decision='wrong caption']{background:#fde2e0;border-color:#c0392b}
.card[data-decision='fine']{background:#e3f4e1;border-color:#2e8b3a}
.card[data-decision='unsure']{background:#f1eee0;border-color:#8a7a2e}
.decide{display:flex;flex-wrap:wrap;gap:4px;margin-top:6px}
.decide button{font-size:.8em} .decide button[aria-pressed='true']{font-weight:700;outline:2px solid #333}
.review{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin:.8em 0;padding:.5em;background:#f0f3f8}
.note{color:#555;font-size:.85em}
.histogram{max-width:100%;height:auto}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("report-config").textContent);
  var rows = JSON.parse(document.getElementById("report-rows").textContent);
  var reasonFilter = document.getElementById("filter-reason");
  var noiseFilter = document.getElementById("filter-noise");
  var decisionFilter = document.getElementById("filter-decision");
  var sortBy = document.getElementById("sort-by");
  var sortOrder = document.getElementById("sort-order");
  var grid = document.getElementById("cards");
  var reviewButton = document.getElementById("review-toggle");
  var message = document.getElementById("review-message");
  var WORDS = config.decisions;
  var SHORTCUTS = {w: WORDS[0], f: WORDS[1], u: WORDS[2]};
  var STORE = "clipmem-decisions:" + config.run;
  var page = 0;
  var visible = rows;
  var reviewing = false;
  var cursor = 0;
  // each entry is one user action: the decisions it replaced, [{key, before}], before null when undecided
  var undoStack = [];
  var byKey = new Map();
  var decisions = new Map();  // key -> {decision, decided_at}
  var storage = openStorage();

  rows.forEach(function (row, position) { row.rank = position; byKey.set(row.key, row); });

  // --- decisions: kept in localStorage under the run's id --------------------------------------------

  // file:// pages may be refused storage (a browser setting); the page still works, export keeps the work
  function openStorage() {
    try {
      var probe = STORE + ":probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (error) {
      return null;
    }
  }

  function loadDecisions() {
    if (!storage) return;
    var saved;
    try { saved = JSON.parse(storage.getItem(STORE) || "{}"); } catch (error) { saved = {}; }
    Object.keys(saved).forEach(function (key) {
      var entry = saved[key];
      if (byKey.has(key) && entry && WORDS.indexOf(entry.decision) >= 0) {
        decisions.set(key, {decision: entry.decision, decided_at: String(entry.decided_at || "")});
      }
    });
  }

  function saveDecisions() {
    if (!storage) return;
    var saved = {};
    decisions.forEach(function (entry, key) { saved[key] = entry; });
    try {
      storage.setItem(STORE, JSON.stringify(saved));
    } catch (error) {
      say("this browser refused to keep the decisions (" + error.name + "); export them before closing the page");
    }
  }

  function say(text) { message.textContent = text; }

  function decisionOf(row) {
    var entry = decisions.get(row.key);
    return entry ? entry.decision : "";
  }

  // one undoable action: every change in `changes` ({key, entry}; entry null clears) at once
  function apply(changes) {
    var undo = changes.map(function (change) {
      return {key: change.key, before: decisions.get(change.key) || null};
    });
    changes.forEach(function (change) { setEntry(change.key, change.entry); });
    if (undo.length) undoStack.push(undo);
    afterChange(changes.map(function (change) { return change.key; }));
  }

  function setEntry(key, entry) {
    if (entry) decisions.set(key, entry); else decisions.delete(key);
  }

  function decide(key, word) {
    apply([{key: key, entry: word ? {decision: word, decided_at: new Date().toISOString()} : null}]);
  }

  function undo() {
    var last = undoStack.pop();
    if (!last) { say("nothing to undo"); return; }
    last.forEach(function (item) { setEntry(item.key, item.before); });
    afterChange(last.map(function (item) { return item.key; }));
    if (reviewing && last.length === 1) {
      var at = visible.indexOf(byKey.get(last[0].key));
      if (at >= 0) { cursor = at; showReview(); }
    }
    say("undone: " + (last.length === 1 ? "key " + last[0].key : last.length + " decisions"));
  }

  function afterChange(keys) {
    saveDecisions();
    keys.forEach(function (key) {
      var node = grid.querySelector(".card[data-key='" + cssString(key) + "']");
      if (node) markCard(node, byKey.get(key));
    });
    showCounts();
  }

  function cssString(text) { return String(text).replace(/\\/g, "\\\\").replace(/'/g, "\\'"); }

  function showCounts() {
    var counts = {"": 0};
    WORDS.forEach(function (word) { counts[word] = 0; });
    rows.forEach(function (row) { counts[decisionOf(row)] += 1; });
    var parts = WORDS.map(function (word) { return word + " " + counts[word]; });
    document.getElementById("decision-counts").textContent =
      "decided " + (rows.length - counts[""]) + " of " + rows.length + ": " + parts.join(" \u00b7 ") +
      " \u00b7 undecided " + counts[""];
    Array.from(decisionFilter.options).forEach(function (option) {
      if (option.value === "") return;
      var word = option.value === "undecided" ? "" : option.value;
      option.textContent = (option.value || "any") + " (" + counts[word] + ")";
    });
  }

  // --- decisions.csv: export as a download, import from a file ---------------------------------------

  // A spreadsheet runs a cell that starts with = + - @ tab or CR as a formula (CSV injection): such a field is
  // written after one apostrophe, as OWASP advises, and one is taken off on import (curate.decisions does the same).
  // Fields that already start with apostrophes before such a character get one more, so the two stay inverses.
  var FORMULA_START = /^'*[=+\-@\t\r]/;

  function csvField(value) {
    var text = String(value);
    if (FORMULA_START.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function unescapeFormula(text) {
    return text.charAt(0) === "'" && FORMULA_START.test(text.slice(1)) ? text.slice(1) : text;
  }

  function decisionsCsv() {
    var lines = [config.decision_columns.join(",")];
    rows.forEach(function (row) {
      var entry = decisions.get(row.key);
      if (!entry) return;
      var values = {key: row.key, decision: entry.decision, decided_at: entry.decided_at, caption: row.caption};
      lines.push(config.decision_columns.map(function (column) { return csvField(values[column]); }).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function exportDecisions() {
    var blob = new Blob([decisionsCsv()], {type: "text/csv;charset=utf-8"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = config.decisions_file;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 0);
    say("exported " + decisions.size + " decisions as " + config.decisions_file);
  }

  // RFC 4180: quoted fields may hold commas, doubled quotes and line breaks
  function parseCsv(text) {
    var records = [], record = [], field = "", quoted = false, i = 0;
    if (text.charCodeAt(0) === 0xfeff) i = 1;
    for (; i < text.length; i++) {
      var c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
        else if (c === '"') quoted = false;
        else field += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { record.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        record.push(field); records.push(record); record = []; field = "";
      } else field += c;
    }
    if (field !== "" || record.length) { record.push(field); records.push(record); }
    return records.filter(function (r) { return r.length > 1 || r[0] !== ""; })
      .map(function (r) { return r.map(unescapeFormula); });
  }

  // rows for keys this report does not show, or whose caption is another than the card's, are left out:
  // a key is a position in the data, not an identity
  function importDecisions(text, name) {
    var records = parseCsv(text);
    var header = records.shift() || [];
    var column = {};
    header.forEach(function (title, index) { column[title.trim()] = index; });
    if (!("key" in column) || !("decision" in column)) {
      say(name + ": no key and decision columns; nothing imported");
      return;
    }
    var changes = [], skipped = {"key not in this report": 0, "caption differs": 0, "unknown decision": 0};
    records.forEach(function (record) {
      var key = record[column.key], word = record[column.decision], row = byKey.get(key);
      if (!row) { skipped["key not in this report"] += 1; return; }
      if ("caption" in column && record[column.caption] !== row.caption) { skipped["caption differs"] += 1; return; }
      if (WORDS.indexOf(word) < 0) { skipped["unknown decision"] += 1; return; }
      var at = "decided_at" in column ? record[column.decided_at] || "" : "";
      changes.push({key: key, entry: {decision: word, decided_at: at || new Date().toISOString()}});
    });
    apply(changes);
    var left = Object.keys(skipped).filter(function (why) { return skipped[why] > 0; })
      .map(function (why) { return skipped[why] + " (" + why + ")"; });
    say("imported " + changes.length + " decisions from " + name + (left.length ? "; left out " + left.join(", ") : ""));
  }

  function readImport(event) {
    var file = event.target.files[0];
    if (!file) return;
    file.text().then(function (text) {
      importDecisions(text, file.name);
      event.target.value = "";
    });
  }

  // --- the gallery: filter, sort, page --------------------------------------------------------------

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

  function fillDecisionFilter() {
    addOption(decisionFilter, "undecided", "undecided");
    WORDS.forEach(function (word) { addOption(decisionFilter, word, word); });
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

  function decisionMatches(row, wanted) {
    return wanted === "" || (wanted === "undecided" ? decisionOf(row) === "" : decisionOf(row) === wanted);
  }

  function selectRows() {
    var kind = reasonFilter.value, noise = noiseFilter.value, decision = decisionFilter.value;
    var chosen = rows.filter(function (row) {
      return (kind === "" || row.kinds.indexOf(kind) >= 0) && (noise === "" || noiseChoices(row).indexOf(noise) >= 0) &&
        decisionMatches(row, decision);
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

  function decisionButtons() {
    var bar = element("div", "decide");
    WORDS.concat([""]).forEach(function (word) {
      var button = element("button", null, word || "clear");
      button.type = "button";
      button.dataset.decision = word;
      bar.appendChild(button);
    });
    return bar;
  }

  function markCard(node, row) {
    var word = decisionOf(row);
    node.dataset.decision = word;
    node.querySelectorAll(".decide button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(word !== "" && button.dataset.decision === word));
    });
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
    node.appendChild(decisionButtons());
    markCard(node, row);
    return node;
  }

  function pageCount() { return Math.max(1, Math.ceil(visible.length / config.page_size)); }

  function setStatus(text) {
    document.querySelectorAll(".page-status").forEach(function (node) { node.textContent = text; });
  }

  function showPage() {
    var first = page * config.page_size;
    var shown = visible.slice(first, first + config.page_size);
    var fragment = document.createDocumentFragment();
    shown.forEach(function (row) { fragment.appendChild(card(row)); });
    grid.replaceChildren(fragment);
    var status = visible.length === 0 ? "no pairs match" :
      "showing " + (first + 1) + "\u2013" + (first + shown.length) + " of " + visible.length +
      (visible.length === rows.length ? "" : " (filtered from " + rows.length + ")");
    setStatus(status + ", page " + (page + 1) + " of " + pageCount());
    document.querySelectorAll(".pager button").forEach(function (button) {
      var action = button.dataset.page;
      button.disabled = (action === "first" || action === "previous") ? page === 0 : page >= pageCount() - 1;
    });
  }

  // The filters apply when chosen: deciding a card does not take it out of the page or the review walk.
  function refresh() {
    visible = selectRows();
    page = 0;
    cursor = 0;
    show();
  }

  function show() { if (reviewing) showReview(); else showPage(); }

  function turnPage(event) {
    var action = event.target.dataset && event.target.dataset.page;
    if (!action) return;
    if (reviewing) {
      var target = {first: 0, previous: cursor - 1, next: cursor + 1, last: visible.length - 1}[action];
      moveTo(target);
      return;
    }
    var last = pageCount() - 1;
    page = {first: 0, previous: Math.max(0, page - 1), next: Math.min(last, page + 1), last: last}[action];
    showPage();
    if (event.currentTarget.id === "pager-bottom") grid.scrollIntoView();
  }

  function clickDecision(event) {
    var button = event.target.closest(".decide button");
    if (!button) return;
    var key = button.closest(".card").dataset.key;
    decide(key, button.dataset.decision);
    if (reviewing && button.dataset.decision) moveTo(cursor + 1);
  }

  // --- review mode: one card at a time through the current filter and sort ----------------------------

  function showReview() {
    if (visible.length === 0) { grid.replaceChildren(); setStatus("no pairs match"); return; }
    cursor = Math.min(Math.max(cursor, 0), visible.length - 1);
    grid.replaceChildren(card(visible[cursor]));
    setStatus("reviewing " + (cursor + 1) + " of " + visible.length);
    document.querySelectorAll(".pager button").forEach(function (button) {
      var action = button.dataset.page;
      button.disabled = (action === "first" || action === "previous") ? cursor === 0 : cursor >= visible.length - 1;
    });
  }

  function moveTo(position) {
    cursor = Math.min(Math.max(position, 0), Math.max(visible.length - 1, 0));
    showReview();
  }

  function setReviewing(on) {
    if (on === reviewing) return;
    reviewing = on;
    grid.classList.toggle("reviewing", on);
    reviewButton.textContent = on ? "back to the gallery (Esc)" : "review one at a time (r)";
    if (on) { cursor = page * config.page_size; showReview(); }
    else { page = Math.floor(cursor / config.page_size); showPage(); }
  }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
  }

  function onKey(event) {
    if (typing(event.target) || event.altKey) return;
    var key = event.key;
    if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") { event.preventDefault(); undo(); return; }
    if (event.ctrlKey || event.metaKey) return;
    if (key === "z") { undo(); return; }
    if (key === "r" && !reviewing) { setReviewing(true); return; }
    if (!reviewing) return;
    if (key === "Escape") setReviewing(false);
    else if (key === "j" || key === "ArrowRight") moveTo(cursor + 1);
    else if (key === "k" || key === "ArrowLeft") moveTo(cursor - 1);
    else if (SHORTCUTS[key] && visible.length) {
      decide(visible[cursor].key, SHORTCUTS[key]);
      moveTo(cursor + 1);
    } else return;
    event.preventDefault();
  }

  loadDecisions();
  fillReasonFilter();
  fillNoiseFilter();
  fillDecisionFilter();
  fillSortChoices();
  [reasonFilter, noiseFilter, decisionFilter, sortBy, sortOrder].forEach(function (control) {
    control.addEventListener("change", refresh);
  });
  document.querySelectorAll(".pager").forEach(function (pager) { pager.addEventListener("click", turnPage); });
  grid.addEventListener("click", clickDecision);
  reviewButton.addEventListener("click", function () { setReviewing(!reviewing); });
  document.getElementById("export-decisions").addEventListener("click", exportDecisions);
  document.getElementById("import-decisions").addEventListener("change", readImport);
  document.addEventListener("keydown", onKey);
  document.getElementById("run-id").textContent = config.run;
  if (!storage) say("this browser keeps nothing for pages opened from disk: export the decisions before closing");
  showCounts();
  refresh();
})();
"""
