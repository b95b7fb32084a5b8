"""Model-free caption checks: empty, one word, file-name or URL-like, boilerplate repeated on many images.

Example:
    >>> from curate.lint import lint_captions
    >>> lint_captions(["", "dog", "IMG_0042.JPG", "a red barn", "Etiquette Icons"] + ["Etiquette Icons"] * 5)[:4]
    [['empty'], ['one word'], ['file-name or URL-like', 'one word'], []]
"""

from __future__ import annotations

import re
from collections import Counter

BOILERPLATE_MIN_IMAGES = 5
# Camera and upload-tool file names, URLs and image file names: what alt text holds when nobody wrote one.
_FILE_OR_URL = re.compile(
    r"(https?://\S+|www\.\S+|\S+\.(jpe?g|png|gif|svg|webp|bmp|tiff?)\b|\b(img|dsc|dscn|dcim|pxl|screenshot|image)[-_ ]?\d+\S*)",
    re.IGNORECASE,
)
SEVERE = ("empty", "file-name or URL-like")


def lint_caption(caption: str, repeats: int = 1, boilerplate_min: int = BOILERPLATE_MIN_IMAGES) -> list:
    """The lint findings of one caption; `repeats` is how many images in the dataset carry it."""
    text = caption.strip()
    if not text:
        return ["empty"]
    findings = []
    leftover = _FILE_OR_URL.sub("", text).strip(" .,;:-_|/")
    if not leftover:
        findings.append("file-name or URL-like")
    elif leftover != text.strip(" .,;:-_|/"):
        findings.append("contains a URL or file name")
    if len(text.split()) == 1:
        findings.append("one word")
    if repeats >= boilerplate_min:
        findings.append(f"boilerplate (same caption on {repeats} images)")
    return findings


def lint_captions(captions: list, boilerplate_min: int = BOILERPLATE_MIN_IMAGES) -> list:
    """Findings for every caption, counting repeats over the whole list (normalized for case and spaces)."""
    normalized = [normalize(c) for c in captions]
    counts = Counter(normalized)
    return [lint_caption(c, counts[n], boilerplate_min) for c, n in zip(captions, normalized)]


def caption_repeats(captions: list) -> list:
    """How many samples share each sample's caption (1 = unique)."""
    normalized = [normalize(c) for c in captions]
    counts = Counter(normalized)
    return [counts[n] for n in normalized]


def normalize(caption: str) -> str:
    return " ".join(caption.lower().split())


def is_severe(findings: list) -> bool:
    """Findings that make a caption useless on their own, whatever a model says about it."""
    return any(f in SEVERE for f in findings)
