"""report.html in a real headless browser: cards and thumbnails render, filters, sorting and paging work,
and a caption that is markup stays text.

Chromium is a requirement of the test suite, not an option: `scripts/install_system_data.sh` installs
Debian's package and playwright drives it (playwright's own browser download is never used).
"""

from __future__ import annotations

import base64
import io
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import sync_playwright

from curate import flagging, outputs, report_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ROW = 3  # on the first page, so the browser renders it without paging
NOISE = [None, "cross-category", np.nan, "within-category", "shared-keyword", "boilerplate"]
REASONS = [
    "low held-out alignment (0.123)",
    "high cumulative training loss (12.3); high memorization (CLIPMem 0.91)",
    "caption lint: one word; boilerplate (same caption on 7 images)",
    "high combined suspicion (score 0.80)",
    "high memorization (CLIPMem 0.95); caption lint: empty",
]
SUMMARY_LINES = [("data", "hand-made <frame> & co"), ("flagged", "most of them")]
ALL_IMAGES_LOADED = "() => { const images = Array.from(document.querySelectorAll('.card img'));" \
                    " return images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0); }"


def wait_until_true(page, expression: str, timeout_s: float = 30.0) -> bool:
    """Polls `expression` from Python. playwright's wait_for_function polls with eval inside the page, which
    the report's Content-Security-Policy forbids: it passes only when the first check (made over CDP) is
    already true, so it failed on slower machines."""
    deadline = time.monotonic() + timeout_s
    while True:
        if page.evaluate(expression):
            return True
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(100)


def picture(index: int, size: int, mode: str = "RGB") -> Image.Image:
    """A distinct drawing per index, with some noise so JPEG sizes are like a photo's, not a flat colour's."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // 4 + np.uint8(150)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    fill = (index * 47 % 256, index * 91 % 256, index * 13 % 256, 255)
    ImageDraw.Draw(image).ellipse((size // 5, size // 4, 4 * size // 5, 3 * size // 4), fill=fill[:len(mode)])
    return image


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def stored_image(index: int) -> tuple:
    """(bytes, ext) as a dataset stores them: tiny PNGs, large JPEGs, and transparent PNGs."""
    kind = index % 3
    if kind == 0:
        return encoded(picture(index, 16), "PNG"), "png"
    if kind == 1:
        return encoded(picture(index, 200), "JPEG"), "jpg"
    return encoded(picture(index, 120, "RGBA"), "PNG"), "png"


def scores_frame(flagged: int, unflagged: int = 20) -> pd.DataFrame:
    """A scores table shaped like flag's: keys, captions, scores, reasons, noise types, ground truth."""
    n = flagged + unflagged
    prime = 5003  # clipmem values i*37 mod a prime above n are all distinct: sorting by them has no ties
    noise = [NOISE[i % len(NOISE)] for i in range(n)]
    frame = pd.DataFrame({
        "key": [f"{i:09d}" for i in range(n)],
        "caption": [SCRIPT if i == SCRIPT_ROW else f"caption number {i}" for i in range(n)],
        "score": [1 - i / n for i in range(n)],
        "clipmem": [(i * 37 % prime) / prime for i in range(n)],
        "clipscore": [(i * 53 % 97) / 97 for i in range(n)],
        "csl": [10 + (i * 29 % 89) / 8 for i in range(n)],
        "image_mem": [(i % 11) / 100 for i in range(n)],
        "text_mem": [math.nan if i % 7 == 0 else (i * 13 % 17) / 100 for i in range(n)],
        "caption_repeats": [1 + i % 4 for i in range(n)],
        "reasons": [REASONS[i % len(REASONS)] for i in range(n)],
        "noise": pd.Series(noise, dtype=object),
        "injected": [isinstance(value, str) for value in noise],
        "original_caption": [f"the true caption {i}" if isinstance(noise[i], str) else None for i in range(n)],
        "flagged": [i < flagged for i in range(n)],
    })
    # flag's table is not in suspicion order; the report must put it there
    return frame.sample(frac=1, random_state=0).reset_index(drop=True)


def thumbnails_for(frame: pd.DataFrame, distinct: int | None = None) -> dict:
    """Every key's data URI; with `distinct`, only that many images are encoded and reused in turn."""
    made = {}
    uris = {}
    for position, key in enumerate(frame["key"]):
        index = int(key) if distinct is None else position % distinct
        if index not in made:
            made[index] = report_html.thumbnail_uri(*stored_image(index))
        uris[key] = made[index]
    return uris


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), "Chromium is required: run scripts/install_system_data.sh (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """250 flagged pairs (three pages) and 20 unflagged ones that must stay out of the gallery."""
    frame = scores_frame(250)
    path = outputs.write_report(tmp_path_factory.mktemp("report") / "report.html", frame, thumbnails_for(frame),
                                SUMMARY_LINES)
    return path, flagging.flagged_first(frame)


class Opened:
    """One browser tab on a report, recording any dialog, script error or console error it raises."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page()
        self.dialogs, self.errors = [], []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.goto(path.as_uri())
        self.page.wait_for_selector(".card")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def keys(self) -> list:
        return self.page.eval_on_selector_all(".card", "cards => cards.map(card => card.dataset.key)")

    def status(self) -> str:
        return self.page.text_content("#pager-top .page-status")

    def choose(self, control: str, value: str) -> None:
        self.page.select_option(control, value)

    def turn(self, action: str) -> None:
        self.page.click(f"#pager-top button[data-page='{action}']")

    def images_loaded(self) -> bool:
        return wait_until_true(self.page, ALL_IMAGES_LOADED)


@pytest.fixture
def opened(browser, report):
    tab = Opened(browser, report[0])
    yield tab
    tab.page.close()
    assert tab.errors == [] and tab.dialogs == []


def first_page(keys) -> list:
    return list(keys)[:report_html.PAGE_SIZE]


def test_cards_render_most_suspect_first_with_their_images(opened, report):
    _, flagged = report
    assert opened.keys() == first_page(flagged["key"])
    assert opened.images_loaded()
    assert opened.status() == "showing 1\u2013100 of 250, page 1 of 3"
    assert opened.page.text_content("#total").startswith("250 flagged pairs")
    assert "hand-made <frame> & co" in opened.page.text_content("table.summary")
    assert opened.page.get_attribute("img.histogram", "src").startswith("data:image/png;base64,")


def test_a_card_shows_caption_scores_reasons_noise_and_ground_truth(opened, report):
    _, flagged = report
    row = flagged[flagged["noise"] == "shared-keyword"].iloc[0]
    card = opened.page.locator(f".card[data-key='{row['key']}']")
    assert card.get_attribute("class") == "card injected"
    assert card.locator(".caption").text_content() == row["caption"]
    assert card.locator(".reasons").text_content() == row["reasons"]
    assert card.locator(".noise").text_content() == "noise: shared-keyword"
    assert card.locator(".truth").text_content() == f"injected swap; original: {row['original_caption']}"
    assert f"clipmem {row['clipmem']:.3f}" in card.locator(".scores").text_content()
    clean = flagged[flagged["noise"].isna()].iloc[0]
    clean_card = opened.page.locator(f".card[data-key='{clean['key']}']")
    assert clean_card.get_attribute("class") == "card"
    assert clean_card.locator(".noise").count() == 0 and clean_card.locator(".truth").count() == 0


def test_a_caption_that_is_a_script_stays_text(opened, report):
    path, flagged = report
    victim = flagged.loc[flagged["caption"] == SCRIPT, "key"].item()
    assert opened.page.locator(f".card[data-key='{victim}'] .caption").text_content() == SCRIPT
    # the page's own three scripts (config, rows, code) and no other
    assert opened.page.evaluate("document.scripts.length") == 3
    # escaped in the embedded JSON: the only closing tags are those of the page's own three scripts
    assert SCRIPT not in path.read_text() and path.read_text().count("</script>") == 3
    # dialogs: checked by the fixture after the test


@pytest.mark.parametrize("kind", ["caption lint", "low held-out alignment", "high memorization"])
def test_filtering_by_reason_kind_shows_exactly_those_pairs(opened, report, kind):
    _, flagged = report
    expected = flagged[flagged["reasons"].map(lambda text: kind in report_html.reason_kinds(text))]["key"]
    assert 0 < len(expected) < len(flagged)
    opened.choose("#filter-reason", kind)
    assert opened.keys() == first_page(expected)
    assert opened.status().startswith(f"showing 1\u2013{min(len(expected), 100)} of {len(expected)} (filtered from 250)")
    assert all(kind in text for text in opened.page.eval_on_selector_all(".card .reasons", "n => n.map(x => x.textContent)"))


def test_lint_findings_are_not_reason_kinds_of_their_own(opened):
    offered = opened.page.eval_on_selector_all("#filter-reason option", "options => options.map(o => o.value)")
    assert sorted(offered) == ["", "caption lint", "high combined suspicion", "high cumulative training loss",
                               "high memorization", "low held-out alignment"]


@pytest.mark.parametrize("choice, selects", [
    ("type:boilerplate", lambda frame: frame["noise"] == "boilerplate"),
    ("type:", lambda frame: frame["noise"].isna()),
    ("injected:yes", lambda frame: frame["injected"]),
])
def test_filtering_by_noise_type_shows_exactly_those_pairs(opened, report, choice, selects):
    _, flagged = report
    expected = flagged[selects(flagged)]["key"]
    opened.choose("#filter-noise", choice)
    assert opened.keys() == first_page(expected)
    assert f" of {len(expected)} (filtered from 250)" in opened.status()


def test_both_filters_combine(opened, report):
    _, flagged = report
    lint = flagged["reasons"].map(lambda text: "caption lint" in report_html.reason_kinds(text))
    both = lint & (flagged["noise"] == "cross-category")
    opened.choose("#filter-reason", "caption lint")
    opened.choose("#filter-noise", "type:cross-category")
    assert opened.keys() == list(flagged.loc[both, "key"]) and both.sum() > 0


def sorted_keys(frame: pd.DataFrame, column: str, descending: bool) -> list:
    """The page's order: by the score, missing scores last either way, ties in flagged order."""
    ranked = frame.assign(rank=range(len(frame)))
    present = ranked[ranked[column].notna()].sort_values([column, "rank"], ascending=[not descending, True])
    return list(present["key"]) + list(ranked.loc[ranked[column].isna(), "key"])


@pytest.mark.parametrize("column, order", [("clipmem", "descending"), ("clipmem", "ascending"),
                                           ("text_mem", "ascending"), ("csl", "descending")])
def test_sorting_by_a_score_reorders_the_cards(opened, report, column, order):
    _, flagged = report
    opened.choose("#sort-order", order)
    opened.page.select_option("#sort-by", label=column)
    expected = sorted_keys(flagged, column, order == "descending")
    assert expected[:100] != first_page(flagged["key"])
    assert opened.keys() == expected[:100]
    opened.turn("last")
    assert opened.keys() == expected[200:]


def test_sort_offers_the_named_scores_first_then_the_other_numbers(opened):
    offered = opened.page.eval_on_selector_all("#sort-by option", "options => options.map(o => o.textContent)")
    assert offered == ["most suspect first", "score", "clipmem", "clipscore", "csl", "image_mem", "text_mem",
                       "caption_repeats"]


def test_paging_walks_through_every_flagged_pair(opened, report):
    _, flagged = report
    keys = list(flagged["key"])
    assert opened.page.is_disabled("#pager-top button[data-page='previous']")
    opened.turn("next")
    assert opened.keys() == keys[100:200]
    assert opened.status() == "showing 101\u2013200 of 250, page 2 of 3"
    assert opened.images_loaded()
    opened.turn("next")
    assert opened.keys() == keys[200:250]
    assert opened.page.is_disabled("#pager-top button[data-page='next']")
    opened.turn("previous")
    assert opened.keys() == keys[100:200]
    opened.page.click("#pager-bottom button[data-page='first']")
    assert opened.keys() == keys[:100]


def test_five_thousand_pairs_open_on_their_first_page(browser, tmp_path):
    frame = scores_frame(5000)
    path = outputs.write_report(tmp_path / "report.html", frame, thumbnails_for(frame, distinct=60), SUMMARY_LINES)
    # measured 9.2 MB with these images (about 1.8 kB a card); far above means thumbnails stopped being small
    assert path.stat().st_size < 15_000_000
    tab = Opened(browser, path)
    assert tab.keys() == first_page(flagging.flagged_first(frame)["key"])
    assert tab.status() == "showing 1\u2013100 of 5000, page 1 of 50"
    assert tab.page.text_content("#total").startswith("5000 flagged pairs")
    assert tab.images_loaded()
    tab.turn("last")
    assert len(tab.keys()) == 100 and tab.status().startswith("showing 4901\u20135000 of 5000")
    assert tab.errors == [] and tab.dialogs == []


def test_thumbnails_are_small_jpegs_unless_already_tiny():
    tiny, tiny_ext = stored_image(0)
    assert report_html.thumbnail_uri(tiny, tiny_ext) == "data:image/png;base64," + base64.b64encode(tiny).decode()
    for index in (1, 2):
        uri = report_html.thumbnail_uri(*stored_image(index))
        assert uri.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumbnail:
            assert max(thumbnail.size) == report_html.THUMBNAIL_PX
    assert report_html.thumbnail_uri(b"not an image", "jpg") == ""


def test_transparent_images_are_flattened_onto_white():
    clear = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    uri = report_html.thumbnail_uri(encoded(clear, "PNG"), "png")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumbnail:
        assert np.asarray(thumbnail.convert("L")).min() > 240
