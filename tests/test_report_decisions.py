"""Reviewing in report.html, in headless Chromium: decide by keyboard and by click, undo, keep the decisions
over a reload, export decisions.csv as a download and import it again."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest
from test_report_browser import SUMMARY_LINES, Opened, browser, scores_frame, thumbnails_for  # noqa: F401

from curate import decisions as decisions_io
from curate import flagging, outputs, report_html

# a caption a CSV writer must quote: comma, doubled quote, line break
AWKWARD = 'a "quoted", caption\nover two lines'
AWKWARD_ROW = 5
# captions a spreadsheet would run as formulas, one already behind an apostrophe
FORMULAS = {6: '=HYPERLINK("http://example.invalid","open me")', 9: "'-1 is not a formula, '@ neither"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    frame = scores_frame(250)
    frame.loc[frame["key"] == f"{AWKWARD_ROW:09d}", "caption"] = AWKWARD
    for row, caption in FORMULAS.items():
        frame.loc[frame["key"] == f"{row:09d}", "caption"] = caption
    path = outputs.write_report(tmp_path_factory.mktemp("review") / "report.html", frame, thumbnails_for(frame, 20),
                                SUMMARY_LINES)
    return path, flagging.flagged_first(frame)


@pytest.fixture
def opened(browser, report):  # noqa: F811
    tab = Opened(browser, report[0])
    yield tab
    tab.page.close()
    assert tab.errors == [] and tab.dialogs == []


def decided(tab: Opened) -> dict:
    """key -> decision of the cards on screen that have one."""
    pairs = tab.page.eval_on_selector_all(".card", "cards => cards.map(c => [c.dataset.key, c.dataset.decision])")
    return {key: decision for key, decision in pairs if decision}


def counts_text(tab: Opened) -> str:
    return tab.page.text_content("#decision-counts")


def shown_key(tab: Opened) -> str:
    keys = tab.keys()
    assert len(keys) == 1, keys
    return keys[0]


def click_decision(tab: Opened, key: str, word: str) -> None:
    tab.page.click(f".card[data-key='{key}'] .decide button[data-decision='{word}']")


def export(tab: Opened, folder: Path) -> pd.DataFrame:
    with tab.page.expect_download() as download_info:
        tab.page.click("#export-decisions")
    download = download_info.value
    assert download.suggested_filename == "decisions.csv"
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def test_review_mode_walks_the_filtered_sorted_cards_and_decides_by_keyboard(opened, report):
    _, flagged = report
    lint = flagged[flagged["reasons"].map(lambda text: "caption lint" in report_html.reason_kinds(text))]
    walk = list(lint.sort_values(["clipmem"], ascending=False, kind="mergesort")["key"])
    opened.choose("#filter-reason", "caption lint")
    opened.page.select_option("#sort-by", label="clipmem")
    opened.page.click("#review-toggle")
    assert shown_key(opened) == walk[0] and opened.status() == f"reviewing 1 of {len(walk)}"
    for key in ("w", "f", "u"):
        opened.page.keyboard.press(key)
    assert shown_key(opened) == walk[3]
    opened.page.keyboard.press("k")
    assert shown_key(opened) == walk[2] and decided(opened) == {walk[2]: "unsure"}
    opened.page.keyboard.press("j")
    opened.page.keyboard.press("j")
    assert shown_key(opened) == walk[4]
    assert counts_text(opened) == "decided 3 of 250: wrong caption 1 \u00b7 fine 1 \u00b7 unsure 1 \u00b7 undecided 247"
    opened.page.keyboard.press("z")  # undo brings the card of the undone decision back
    assert shown_key(opened) == walk[2] and decided(opened) == {}
    opened.page.keyboard.press("Control+z")
    assert shown_key(opened) == walk[1] and decided(opened) == {}
    assert counts_text(opened).startswith("decided 1 of 250: wrong caption 1 \u00b7 fine 0")
    opened.page.keyboard.press("Escape")
    assert opened.keys() == walk[:100]
    assert decided(opened) == {walk[0]: "wrong caption"}


def test_decisions_survive_a_reload_and_filter_the_cards(opened, report):
    _, flagged = report
    keys = list(flagged["key"])
    chosen = {keys[0]: "fine", keys[7]: "wrong caption", keys[150]: "unsure", keys[8]: "wrong caption"}
    for key, word in list(chosen.items())[:2]:
        click_decision(opened, key, word)
    opened.turn("next")
    click_decision(opened, keys[150], "unsure")
    opened.turn("first")
    click_decision(opened, keys[8], "fine")
    click_decision(opened, keys[8], "wrong caption")  # a second click replaces the first
    opened.page.reload()
    opened.page.wait_for_selector(".card")
    assert decided(opened) == {k: w for k, w in chosen.items() if k != keys[150]}
    assert counts_text(opened) == "decided 4 of 250: wrong caption 2 \u00b7 fine 1 \u00b7 unsure 1 \u00b7 undecided 246"
    opened.choose("#filter-decision", "wrong caption")
    assert opened.keys() == [keys[7], keys[8]]
    opened.choose("#filter-decision", "undecided")
    assert len(set(opened.keys()) & set(chosen)) == 0 and "of 246 (filtered from 250)" in opened.status()
    click_decision(opened, opened.keys()[0], "")  # clearing an undecided card changes nothing
    opened.choose("#filter-decision", "")
    click_decision(opened, keys[0], "")
    opened.page.reload()
    opened.page.wait_for_selector(".card")
    assert keys[0] not in decided(opened) and counts_text(opened).startswith("decided 3 of 250")


def test_another_report_keeps_its_own_decisions(browser, report, tmp_path):  # noqa: F811
    path, flagged = report
    other_frame = scores_frame(30)
    other = outputs.write_report(tmp_path / "report.html", other_frame, thumbnails_for(other_frame, 5), SUMMARY_LINES)
    context = browser.new_context()
    first, second = context.new_page(), context.new_page()
    first.goto(path.as_uri())
    first.click(f".card[data-key='{flagged['key'].iloc[0]}'] .decide button[data-decision='fine']")
    second.goto(other.as_uri())
    second.wait_for_selector(".card")
    assert second.text_content("#decision-counts").startswith("decided 0 of 30")
    assert first.text_content("#run-id") != second.text_content("#run-id")
    context.close()


def test_export_writes_decisions_csv_and_import_restores_it(browser, opened, report, tmp_path):  # noqa: F811
    _, flagged = report
    keys = list(flagged["key"])
    awkward = f"{AWKWARD_ROW:09d}"
    script_key = flagged.loc[flagged["caption"].str.startswith("<script>"), "key"].item()
    formula_keys = [f"{row:09d}" for row in FORMULAS]
    chosen = {keys[1]: "wrong caption", awkward: "fine", script_key: "unsure", keys[2]: "wrong caption",
              formula_keys[0]: "wrong caption", formula_keys[1]: "fine"}
    assert {awkward, script_key, *formula_keys} <= set(keys[:100])
    for key, word in chosen.items():
        click_decision(opened, key, word)
    path = export(opened, tmp_path)
    written = path.read_text(encoding="utf-8")
    assert written.splitlines()[0] == "key,decision,decided_at,caption"
    # what a spreadsheet would run starts with an apostrophe in the file, and only that
    assert "'=HYPERLINK(" in written and "''-1 is not" in written and ",=" not in written
    table = decisions_io.read_decisions(path)
    assert dict(zip(table["key"], table["decision"])) == chosen
    assert list(table["key"]) == [k for k in keys if k in chosen]  # most suspect first, as the report shows them
    captions = flagged.set_index("key")["caption"]
    assert all(table["caption"] == [captions[k] for k in table["key"]])
    assert {AWKWARD, *FORMULAS.values()} <= set(table["caption"])
    stamps = [datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in table["decided_at"]]
    assert all(abs(datetime.datetime.now(datetime.timezone.utc) - t).total_seconds() < 300 for t in stamps)

    # a fresh browser (no saved decisions) takes them back from the file; rows that do not fit are left out
    extra = pd.DataFrame({"key": ["not-a-key", keys[3]], "decision": ["fine", "fine"], "decided_at": ["", ""],
                          "caption": ["x", "another caption than the card's"]})
    as_written = pd.read_csv(path, dtype=str, keep_default_na=False)  # formulas still behind their apostrophe
    pd.concat([as_written, extra]).to_csv(tmp_path / "more.csv", index=False)
    fresh = Opened(browser, report[0])
    assert decided(fresh) == {}
    fresh.page.set_input_files("#import-decisions", str(tmp_path / "more.csv"))
    fresh.page.locator('.card[data-decision]:not([data-decision=""])').first.wait_for(state="attached")
    assert decided(fresh) == chosen
    message = fresh.page.text_content("#review-message")
    assert message.startswith("imported 6 decisions from more.csv") and "1 (key not in this report)" in message
    assert "1 (caption differs)" in message
    again = export(fresh, tmp_path / "again")
    assert decisions_io.read_decisions(again).equals(table)  # decided_at travels unchanged
    fresh.page.keyboard.press("z")  # the whole import is one action to undo
    assert decided(fresh) == {}
    fresh.page.close()
    assert fresh.errors == [] and fresh.dialogs == []
