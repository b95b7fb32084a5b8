"""What a demo-data source yields, and how its images are put on the staging "web" server.

A source (demo.synthetic, demo.openclipart) yields `SourceItem`s: one image with its text. The demo
builder writes each image into a staging folder with `stage_image`, flattened onto white, so that
transparent clip art does not turn black (or lose its anti-aliased edges) in img2dataset's JPEG output.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> from demo.synthetic import generate
    >>> item = next(iter(generate(1, seed=0)))
    >>> stage_image(item, Path(tempfile.mkdtemp()) / item.url_path) is None   # None: staged, no skip reason
    True
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image

# Larger renderings exist in Open Clip Art (up to 20990x29700 px); decoding one costs gigabytes of memory
# for an image that ends up 64 px wide, so such items are skipped and counted instead.
MAX_SOURCE_PIXELS = 64_000_000
# The staging server hosts images no larger than this by default; img2dataset then resizes them.
MAX_STAGED_SIDE = 512
WHITE = (255, 255, 255)
# For the rare drawing that is all white on transparency (a football pitch's lines), so it stays visible.
DARK_GRAY = (80, 80, 80)


@dataclass
class SourceItem:
    """One image of a source with its texts, before it is served and downloaded.

    source_id: stable provenance id ("openclipart:animals/birds/cigno_01", "synthetic:000012").
    url_path: where the image is served under the staging folder (POSIX path, also the url path).
    caption: the primary caption (the sample's .txt); captions: all captions, primary first.
    category: class label for zero-shot and linear-probe evaluation.
    extra: source-specific columns for the url parquet (title, keywords, shape, color, ...).
    Exactly one of image_path (a file to read) and image_bytes (an encoded image) is set.
    """

    source_id: str
    url_path: str
    caption: str
    captions: list
    category: str
    extra: dict = field(default_factory=dict)
    image_path: Optional[Path] = None
    image_bytes: Optional[bytes] = None

    def open_image(self) -> Image.Image:
        if self.image_bytes is not None:
            return Image.open(io.BytesIO(self.image_bytes))
        return Image.open(self.image_path)


def flatten(image: Image.Image, background: tuple = WHITE) -> Image.Image:
    """RGB version of `image`, transparent parts composited onto `background` (not dropped to black)."""
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(backdrop, rgba).convert("RGB")
    return image.convert("RGB")


def is_blank(image: Image.Image) -> bool:
    """True when every pixel has the same colour (e.g. an empty, fully transparent rendering)."""
    return all(low == high for low, high in image.getextrema())


def stage_image(item: SourceItem, destination: Path, max_side: int = MAX_STAGED_SIDE) -> Optional[str]:
    """Write `item`'s image as an opaque PNG at `destination`; return why it was skipped, or None.

    Images wider or taller than `max_side` are shrunk (aspect kept) as a web thumbnail would be.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with item.open_image() as image:
                width, height = image.size
                if width * height > MAX_SOURCE_PIXELS:
                    return f"rendering too large to decode ({width}x{height} px)"
                image.load()
                # Shrink first (Pillow resizes RGBA with premultiplied alpha), then composite: much
                # cheaper than compositing a 10-megapixel rendering.
                image = image.convert("RGBA" if image.has_transparency_data else "RGB")
                image.thumbnail((max_side, max_side), Image.LANCZOS)
                flat = flatten(image)
                if is_blank(flat):
                    flat = flatten(image, DARK_GRAY)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return "rendering too large to decode"
    except (OSError, ValueError) as error:
        return f"unreadable image ({error})"
    if is_blank(flat):
        return "blank image (one colour only)"
    destination.parent.mkdir(parents=True, exist_ok=True)
    flat.save(destination, format="PNG", compress_level=1)  # lossless; staging files are temporary
    return None
