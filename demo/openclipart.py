"""Open Clip Art Library source: public-domain drawings with human-written titles and keywords.

The drawings come from the Debian packages openclipart-png (renderings) and openclipart-svg (the
drawings, whose RDF/Dublin Core metadata holds title, keywords and description). They are used from
/usr/share/openclipart when installed, otherwise fetched with `apt-get download` (no root needed) and
unpacked with `dpkg -x` into a cache folder. Each PNG is matched with its SVG, duplicates (the same PNG
bytes under several category folders) are kept once, and the category is the top folder of the tree.

Example:
    >>> from demo.openclipart import ensure_openclipart, scan
    >>> root = ensure_openclipart()                       # doctest: +SKIP
    >>> result = scan(root)                               # doctest: +SKIP
    >>> len(result.items), result.counts["duplicate_content"]   # doctest: +SKIP
    (6900, 1221)
    >>> make_caption("Etiquette Icons", ["hash", "icon", "sign_post"], "")[0]
    'Etiquette Icons. icon, sign post'
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from dataio.errors import DataError
from demo.source import SourceItem

PACKAGES = ("openclipart-png", "openclipart-svg")
SYSTEM_ROOT = Path("/usr/share/openclipart")
TREE_IN_PACKAGE = Path("usr/share/openclipart")
COMPLETE_MARKER = ".complete"

_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
# Keywords the 2004-era upload tools inserted that say nothing about the drawing ("hash", "0x8b754fc").
_JUNK_KEYWORD = re.compile(r"^(hash|0x[0-9a-f]+|\d+)$", re.IGNORECASE)
# Descriptions that are upload artefacts or contact addresses rather than text about the image.
_JUNK_DESCRIPTION = re.compile(r"HASH\(0x[0-9a-f]+\)|\S+@\S+\.\w+", re.IGNORECASE)
MAX_CAPTION_KEYWORDS = 8
MAX_DESCRIPTION_CHARS = 160


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/clipmem/openclipart, or ~/.cache/clipmem/openclipart."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipmem" / "openclipart"


def ensure_openclipart(cache_dir: Optional[Path] = None, use_system: bool = True) -> Path:
    """Folder holding png/ and svg/ trees: the installed packages, or the cache (filled on first use).

    Usage (downloads the Debian packages when they are not installed):

        root = ensure_openclipart()
        sorted(p.name for p in root.iterdir())   # ['png', 'svg']
    """
    if use_system and _is_tree(SYSTEM_ROOT):
        return SYSTEM_ROOT
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tree = cache_dir / "tree"
    root = tree / TREE_IN_PACKAGE
    if (tree / COMPLETE_MARKER).exists() and _is_tree(root):
        return root
    debs = download_debs(cache_dir / "debs")
    extract_debs(debs, tree)
    return root


def _is_tree(root: Path) -> bool:
    return (root / "png").is_dir() and (root / "svg").is_dir()


def download_debs(deb_dir: Path) -> list:
    """The two .deb files in `deb_dir`, fetched with `apt-get download` unless already there."""
    found = {package: sorted(deb_dir.glob(f"{package}_*.deb")) for package in PACKAGES}
    missing = [package for package, debs in found.items() if not debs]
    if missing:
        if shutil.which("apt-get") is None:
            raise DataError(
                "the Open Clip Art packages are not installed and apt-get is not available; install "
                f"{' '.join(PACKAGES)} or put their .deb files in {deb_dir}, or use --source synthetic"
            )
        deb_dir.mkdir(parents=True, exist_ok=True)
        print(f"downloading {' '.join(missing)} with apt-get (about 160 MB) into {deb_dir}")
        with tempfile.TemporaryDirectory(dir=deb_dir, prefix=".download-") as partial:
            # apt-get as root drops to the _apt user, which must be able to write here.
            os.chmod(partial, 0o777)
            done = subprocess.run(["apt-get", "download", *missing], cwd=partial, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise DataError(
                    f"apt-get download {' '.join(missing)} failed ({last}); run `apt-get update` or install "
                    "the packages, or use --source synthetic"
                )
            for deb in Path(partial).glob("*.deb"):
                deb.rename(deb_dir / deb.name)  # same folder tree, so the rename is atomic
        found = {package: sorted(deb_dir.glob(f"{package}_*.deb")) for package in PACKAGES}
    return [debs[-1] for debs in found.values()]


def extract_debs(debs: list, tree: Path) -> None:
    """Unpack the .deb files into `tree` with `dpkg -x` (no root), replacing an unfinished earlier try."""
    if shutil.which("dpkg") is None:
        raise DataError(f"dpkg is needed to unpack {', '.join(str(d) for d in debs)}; use --source synthetic")
    partial = tree.with_name(tree.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    partial.mkdir(parents=True)
    for deb in debs:
        done = subprocess.run(["dpkg", "-x", str(deb), str(partial)], capture_output=True, text=True)
        if done.returncode != 0:
            raise DataError(f"{deb}: dpkg -x failed ({done.stderr.strip()}); delete the file to download it again")
    (partial / COMPLETE_MARKER).touch()
    partial.rename(tree)


@dataclass
class Drawing:
    """The text an SVG's metadata gives about its drawing (empty strings when absent)."""

    title: str = ""
    keywords: list = field(default_factory=list)
    description: str = ""


def parse_svg_metadata(svg_path: Path) -> Drawing:
    """Title, keywords (dc:subject) and description from the cc:Work block of an SVG.

    Only the document up to the metadata is read. Raises ElementTree.ParseError (or OSError) when the
    file cannot be parsed that far. The stdlib parser fetches no external DTDs or entities.
    """
    for _event, element in ElementTree.iterparse(svg_path, events=("end",)):
        if element.tag.endswith("}Work") or element.tag == _RDF + "Description":
            return _drawing_from(element)
        if element.tag.endswith("}metadata") or element.tag.endswith("}svg"):
            break
    return Drawing()


def _drawing_from(work) -> Drawing:
    subject = work.find(_DC + "subject")
    keywords = []
    if subject is not None:
        keywords = [li.text.strip() for li in subject.iter(_RDF + "li") if li.text and li.text.strip()]
        if not keywords and subject.text and subject.text.strip():
            keywords = [word.strip() for word in subject.text.split(",") if word.strip()]
    return Drawing(
        title=(work.findtext(_DC + "title") or "").strip(),
        keywords=keywords,
        description=(work.findtext(_DC + "description") or "").strip(),
    )


def make_caption(title: str, keywords: list, description: str, file_stem: str = "") -> tuple:
    """(primary caption, all captions) in the style of web alt text: "Title. description. kw1, kw2".

    Example:
        >>> make_caption("Extremadura", ["map", "spain"], "a simple map of extremadura, enjoy it!")[0]
        'Extremadura. a simple map of extremadura, enjoy it! map, spain'
        >>> make_caption("", [], "", "bored_dog_01")[0]
        'bored dog'
    """
    clean_title = _words(title) or _words(re.sub(r"[_-]?\d+$", "", file_stem))
    clean_description = _clean_description(description, clean_title)
    clean_keywords = _clean_keywords(keywords, clean_title)
    keyword_text = ", ".join(clean_keywords[:MAX_CAPTION_KEYWORDS])
    parts = [p for p in (clean_title, clean_description, keyword_text) if p]
    caption = " ".join(_as_sentence(p) for p in parts[:-1]) + (" " if len(parts) > 1 else "") + parts[-1]
    alternatives = [clean_title, clean_description, ", ".join(clean_keywords)]
    captions = list(dict.fromkeys(c for c in [caption, *alternatives] if c))
    return caption, captions


def _words(text: str) -> str:
    return " ".join(text.replace("_", " ").split())


def _as_sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def _clean_keywords(keywords: list, title: str) -> list:
    kept = {}
    for keyword in keywords:
        words = _words(keyword)
        if words and not _JUNK_KEYWORD.match(words) and words.lower() != title.lower():
            kept.setdefault(words.lower(), words)
    return list(kept.values())


def _clean_description(description: str, title: str) -> str:
    text = " ".join(description.split())
    if not text or _JUNK_DESCRIPTION.search(text) or text.lower() == title.lower():
        return ""
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[:MAX_DESCRIPTION_CHARS].rsplit(" ", 1)[0]
    return text


@dataclass
class ScanResult:
    """Distinct drawings of a tree, in path order, and how many paths were left out and why."""

    items: list
    counts: dict
    broken_svgs: list


def scan(root: Path, progress: bool = True) -> ScanResult:
    """One SourceItem per distinct PNG (by content) that has a readable SVG next to it.

    A drawing filed under several folders (symlinks or copies) is kept at its first real-file path, so
    its category is the folder it was first filed in; sorting makes that choice the same on every run.
    """
    png_root = Path(root) / "png"
    paths = sorted(png_root.rglob("*.png"), key=lambda p: (p.is_symlink(), p.as_posix()))
    counts = {"png_paths": len(paths), "duplicate_content": 0, "missing_svg": 0, "broken_svg": 0}
    seen_hashes = set()
    items, broken = [], []
    for png in tqdm(paths, desc="reading Open Clip Art", unit="drawing", disable=not progress):
        relative = png.relative_to(png_root)
        try:
            digest = hashlib.sha256(png.read_bytes()).hexdigest()
        except OSError:  # e.g. a symlink pointing outside the unpacked tree
            counts["unreadable_png"] = counts.get("unreadable_png", 0) + 1
            continue
        if digest in seen_hashes:
            counts["duplicate_content"] += 1
            continue
        svg = Path(root) / "svg" / relative.with_suffix(".svg")
        if not svg.exists():
            counts["missing_svg"] += 1
            continue
        try:
            drawing = parse_svg_metadata(svg)
        except (ElementTree.ParseError, OSError, UnicodeError) as error:
            counts["broken_svg"] += 1
            broken.append((str(svg), str(error)))
            continue
        seen_hashes.add(digest)
        items.append(_item(relative, png, drawing, digest))
    counts["distinct"] = len(items)
    return ScanResult(items=items, counts=counts, broken_svgs=broken)


def _item(relative: Path, png: Path, drawing: Drawing, digest: str) -> SourceItem:
    caption, captions = make_caption(drawing.title, drawing.keywords, drawing.description, relative.stem)
    return SourceItem(
        source_id="openclipart:" + relative.with_suffix("").as_posix(),
        url_path="openclipart/" + relative.as_posix(),
        caption=caption,
        captions=captions,
        category=relative.parts[0] if len(relative.parts) > 1 else "unsorted",
        extra={"title": drawing.title, "keywords": drawing.keywords, "description": drawing.description,
               "source_sha256": digest},
        image_path=png,
    )
