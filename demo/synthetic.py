"""Synthetic image-caption source: one drawn shape per image, with known attributes and captions.

Each sample is a single big shape (circle, square, triangle, ...) in a distinct colour on a pale
background, so a tiny CLIP model can learn it in minutes. Captions are built from the attributes in
several phrasings; `category` is the shape name. Sample i depends only on (seed, i, size), so the first
40 samples of a 300-sample set equal a 40-sample set with the same seed.

Example:
    >>> from demo.synthetic import generate
    >>> items = list(generate(3, seed=0))
    >>> [item.category for item in items]  # doctest: +SKIP
    ['star', 'ring', 'square']
    >>> items[0].extra["color"] in items[0].caption
    True
"""

from __future__ import annotations

import io
import math
import random
from typing import Iterator

from PIL import Image, ImageDraw

from demo.source import SourceItem

# Shape name -> adjective used in the "... shape in the top left" phrasing.
SHAPES = {
    "circle": "round",
    "square": "square",
    "triangle": "triangular",
    "star": "star-shaped",
    "cross": "cross-shaped",
    "diamond": "diamond-shaped",
    "hexagon": "six-sided",
    "ring": "ring-shaped",
}
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 195, 0),
    "orange": (245, 120, 10),
    "purple": (130, 40, 170),
    "black": (20, 20, 20),
    "pink": (245, 110, 180),
}
BACKGROUNDS = {"white": (255, 255, 255), "gray": (195, 195, 195), "cream": (250, 238, 200)}
# Centre of the shape as a fraction of the image side.
POSITIONS = {
    "top left": (0.3, 0.3),
    "top right": (0.7, 0.3),
    "bottom left": (0.3, 0.7),
    "bottom right": (0.7, 0.7),
    "center": (0.5, 0.5),
}
# Shape radius as a fraction of the image side; small shapes may sit in a corner, large ones are centred.
SIZES = {"small": 0.22, "large": 0.36}
SUPERSAMPLE = 4  # draw larger and shrink: smooth edges without an anti-aliasing library

TEMPLATES = (
    "a {color} {shape} on a {background} background",
    "{size} {color} {shape}",
    "{color} {adjective} shape in the {position}",
    "a drawing of a {size} {color} {shape}",
    "{shape}, {color}, {background} background",
    "clip art of a {color} {shape} in the {position}",
)


def generate(n: int, seed: int = 0, size: int = 128) -> Iterator[SourceItem]:
    """Yield `n` synthetic samples as PNG-encoded `SourceItem`s of `size` x `size` pixels.

    Example:
        >>> item = next(generate(1, seed=1, size=64))
        >>> item.open_image().size
        (64, 64)
    """
    for index in range(n):
        yield make_item(index, seed, size)


def make_item(index: int, seed: int, size: int = 128) -> SourceItem:
    """Sample `index` of the synthetic set for `seed` (independent of how many samples are drawn)."""
    rng = random.Random(f"synthetic:{seed}:{index}")
    attributes = {
        "shape": rng.choice(sorted(SHAPES)),
        "color": rng.choice(sorted(COLORS)),
        "background": rng.choice(sorted(BACKGROUNDS)),
        "shape_size": rng.choice(sorted(SIZES)),
    }
    attributes["position"] = rng.choice(sorted(POSITIONS)) if attributes["shape_size"] == "small" else "center"
    captions = describe(attributes, rng)
    image = draw(attributes, size, rng)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return SourceItem(
        source_id=f"synthetic:{seed}:{index:06d}",
        url_path=f"synthetic/{index:06d}.png",
        caption=captions[0],
        captions=captions,
        category=attributes["shape"],
        extra=attributes,
        image_bytes=buffer.getvalue(),
    )


def describe(attributes: dict, rng: random.Random) -> list:
    """Primary caption first, then 2-4 other phrasings of the same attributes."""
    words = dict(attributes, size=attributes["shape_size"], adjective=SHAPES[attributes["shape"]])
    phrasings = [template.format(**words) for template in TEMPLATES]
    rng.shuffle(phrasings)
    return phrasings[: 1 + rng.randint(2, 4)]


def draw(attributes: dict, size: int, rng: random.Random) -> Image.Image:
    """Render the shape; position and radius are jittered a little so no two images are identical."""
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[attributes["background"]])
    canvas = ImageDraw.Draw(image)
    fx, fy = POSITIONS[attributes["position"]]
    cx = (fx + rng.uniform(-0.04, 0.04)) * big
    cy = (fy + rng.uniform(-0.04, 0.04)) * big
    radius = SIZES[attributes["shape_size"]] * rng.uniform(0.9, 1.1) * big
    rotation = rng.uniform(-15, 15)
    color = COLORS[attributes["color"]]
    shape = attributes["shape"]
    if shape == "circle":
        canvas.ellipse(_box(cx, cy, radius), fill=color)
    elif shape == "ring":
        canvas.ellipse(_box(cx, cy, radius), fill=color)
        canvas.ellipse(_box(cx, cy, radius * 0.55), fill=BACKGROUNDS[attributes["background"]])
    elif shape == "cross":
        arm = radius * 0.35
        canvas.rectangle((cx - radius, cy - arm, cx + radius, cy + arm), fill=color)
        canvas.rectangle((cx - arm, cy - radius, cx + arm, cy + radius), fill=color)
    elif shape == "star":
        canvas.polygon(_star(cx, cy, radius, rotation), fill=color)
    else:
        sides = {"triangle": 3, "square": 4, "diamond": 4, "hexagon": 6}[shape]
        start = {"triangle": -90, "square": 45, "diamond": 0, "hexagon": 0}[shape] + rotation
        squash = 0.7 if shape == "diamond" else 1.0  # a diamond is a square narrowed sideways
        canvas.polygon(_regular_polygon(cx, cy, radius, sides, start, squash), fill=color)
    return image.resize((size, size), Image.LANCZOS)


def _box(cx: float, cy: float, radius: float) -> tuple:
    return (cx - radius, cy - radius, cx + radius, cy + radius)


def _regular_polygon(cx, cy, radius, sides, start_degrees, x_squash=1.0) -> list:
    angles = [math.radians(start_degrees + 360 * k / sides) for k in range(sides)]
    return [(cx + x_squash * radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _star(cx, cy, radius, rotation) -> list:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = math.radians(-90 + rotation + 36 * k)
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points
