"""The synthetic shape source: deterministic, attributes visible in image and captions."""

from __future__ import annotations

from collections import Counter

import numpy as np

from demo.synthetic import BACKGROUNDS, COLORS, SHAPES, generate, make_item


def test_same_seed_gives_identical_items_and_other_seeds_differ():
    first = list(generate(30, seed=3, size=64))
    again = list(generate(30, seed=3, size=64))
    other = list(generate(30, seed=4, size=64))
    assert [(i.caption, i.captions, i.image_bytes) for i in first] == [
        (i.caption, i.captions, i.image_bytes) for i in again
    ]
    assert sum(a.caption != b.caption for a, b in zip(first, other)) > 20


def test_item_depends_on_index_not_on_how_many_are_drawn():
    short = list(generate(5, seed=0))
    assert [i.image_bytes for i in short] == [make_item(k, 0).image_bytes for k in range(5)]
    assert [i.source_id for i in short] == [f"synthetic:0:{k:06d}" for k in range(5)]


def test_captions_name_color_and_shape_and_alternatives_are_distinct():
    for item in generate(60, seed=1):
        shape, color = item.extra["shape"], item.extra["color"]
        assert item.category == shape
        assert item.captions[0] == item.caption
        assert 3 <= len(item.captions) <= 5
        assert len(set(item.captions)) == len(item.captions)
        for caption in item.captions:
            assert color in caption
            assert shape in caption or SHAPES[shape] in caption


def test_images_show_the_background_and_the_shape_color():
    for item in generate(40, seed=2, size=64):
        image = item.open_image().convert("RGB")
        assert image.size == (64, 64)
        assert _close(image.getpixel((0, 0)), BACKGROUNDS[item.extra["background"]])
        difference = np.abs(np.asarray(image, dtype=int) - np.array(COLORS[item.extra["color"]])).max(axis=2)
        shape_pixels = int((difference <= 12).sum())
        assert shape_pixels > 0.02 * 64 * 64, item.caption


def test_every_shape_and_color_occurs_in_a_few_hundred_samples():
    items = list(generate(300, seed=0, size=32))
    assert set(Counter(i.category for i in items)) == set(SHAPES)
    assert set(Counter(i.extra["color"] for i in items)) == set(COLORS)


def _close(pixel, color, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color))
