"""Atomic writes: every file the toolkit writes appears whole under its final name or not at all.

A reader (a trainer, `--reuse`, a rerun after Ctrl-C) never sees half a file: content goes to a hidden
temporary name in the same folder, then `os.replace` renames it over the final name.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text(folder / "notes.txt", "hello")
    >>> (folder / "notes.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('hello', ['notes.txt'])
    >>> temporary_name(folder / "00000.tar").name.startswith(".00000.tar.tmp-")
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def temporary_name(final: Path) -> Path:
    """A hidden sibling of `final`, distinct per process, so concurrent writers never share one."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def atomic_write(path, write: Callable[[Path], object]) -> None:
    """Call write(temporary_path), then rename it over `path`; the temporary file goes on failure."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path, data, indent: int = 2) -> None:
    write_text(path, json.dumps(data, indent=indent, default=str, ensure_ascii=False))


def write_parquet(path, frame) -> None:
    """A pandas DataFrame as parquet, without its index."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
