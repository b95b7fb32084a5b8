"""From an img2dataset folder to an in-memory training table; the held-out split every module shares.

A Table holds, row by row: the key, the image decoded and resized once (uint8 [N, 3, S, S]), all captions
(primary first), the json metadata; tokenized captions are cached per tokenizer. Images beyond the memory
budget go to a uint8 file on disk (numpy memmap) that the OS pages in per batch, so the loop reads them the
same way either way.

Example:
    >>> import torch
    >>> from train.data import table_from_tensors, split_heldout
    >>> table = table_from_tensors(["a", "b"], torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
    ...                            [["red circle"], ["blue square", "a square"]])
    >>> table.rows(["b"]).tolist(), table.captions[1][0]
    ([1], 'blue square')
    >>> train_keys, heldout_keys = split_heldout([f"{i:05d}" for i in range(1000)], frac=0.1, seed=0)
    >>> len(heldout_keys)
    91
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dataio.errors import DataError

DEFAULT_MEMORY_BUDGET_MB = 4096


def split_heldout(keys: Sequence[str], frac: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Split keys into (train, held-out) by a stable hash of seed and key; input order is kept.

    A key's side depends only on (key, frac, seed), never on the other keys, so every module (training,
    evaluation, flagging, trade-off) that calls this with the same arguments agrees.

    Example:
        >>> split_heldout(["k1", "k2", "k3"], frac=0.0)
        (['k1', 'k2', 'k3'], [])
    """
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {frac}")
    train, heldout = [], []
    for key in keys:
        (heldout if unit_hash(f"{seed}:{key}") < frac else train).append(key)
    return train, heldout


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) from `text`: split_heldout's hash of (seed, key)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass
class Table:
    """Training data in memory, one row per sample. `images` is uint8 [N, 3, S, S] (CPU)."""

    keys: list
    images: torch.Tensor
    captions: list
    meta: list
    skipped: list = field(default_factory=list)
    images_on_disk: bool = False
    _index: dict = field(default_factory=dict, repr=False)
    _tokens: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if len(self.keys) != len(set(self.keys)):
            raise DataError("duplicate keys in the table; each img2dataset key must be unique")
        if not (len(self.keys) == len(self.images) == len(self.captions) == len(self.meta)):
            raise ValueError("keys, images, captions and meta must have one entry per sample")
        self._index = {key: row for row, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def rows(self, keys: Iterable[str]) -> torch.Tensor:
        """Row numbers of keys, as a LongTensor; a key not in the table is a DataError naming it."""
        try:
            return torch.tensor([self._index[k] for k in keys], dtype=torch.long)
        except KeyError as missing:
            message = f"key {missing.args[0]} is not in the loaded data (unreadable, or not in --data?)"
            raise DataError(message) from None

    def subset(self, keys: Sequence[str]) -> "Table":
        """These keys' rows as a table of their own (images copied into memory)."""
        rows = self.rows(keys)
        return Table(list(keys), self.images[rows], [self.captions[r] for r in rows.tolist()],
                     [self.meta[r] for r in rows.tolist()])

    def concat(self, other: "Table") -> "Table":
        """This table's rows, then the other's (keys must not repeat)."""
        return Table(self.keys + other.keys, torch.cat([self.images, other.images]), self.captions + other.captions,
                     self.meta + other.meta)

    def tokens(self, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
        """All captions tokenized once: (tokens [total_captions, L], first [N + 1]).

        Caption j of row i is tokens[first[i] + j]; row i has first[i + 1] - first[i] captions.
        """
        cache_key = (id(tokenizer), getattr(tokenizer, "context_length", None))
        if cache_key not in self._tokens:
            counts = torch.tensor([len(c) for c in self.captions], dtype=torch.long)
            first = torch.zeros(len(self) + 1, dtype=torch.long)
            first[1:] = torch.cumsum(counts, 0)
            flat = [caption for captions in self.captions for caption in captions]
            self._tokens[cache_key] = (tokenize_batched(tokenizer, flat), first)
        return self._tokens[cache_key]


def tokenize_batched(tokenizer, texts: list, batch: int = 4096) -> torch.Tensor:
    parts = [tokenizer(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    if not parts:
        return torch.zeros(0, getattr(tokenizer, "context_length", 77), dtype=torch.long)
    return torch.cat(parts)


def table_from_tensors(keys: Sequence[str], images: torch.Tensor, captions: Sequence,
                       meta: Sequence | None = None) -> Table:
    """A Table from ready tensors (tests, synthetic data). captions: one string or a list per sample."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError("images must be uint8 [N, 3, S, S]")
    captions = [[c] if isinstance(c, str) else list(c) for c in captions]
    if any(not c for c in captions):
        raise ValueError("every sample needs at least one caption")
    meta = list(meta) if meta is not None else [{} for _ in keys]
    return Table(list(keys), images, captions, meta)


def load_table(data, keys: Iterable[str] | None = None, image_size: int = 64,
               memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB, cache_dir: str | Path | None = None,
               progress: bool = True) -> Table:
    """Decode a dataset (path or dataio.reader.Dataset) into a Table, optionally only `keys`.

    Unreadable samples (the dataset layer's and images PIL cannot decode) are listed in `table.skipped`.

    Usage:

        table = load_table("laion_subset", image_size=64)
        table.images.shape   # torch.Size([6879, 3, 64, 64])
    """
    from dataio.reader import Dataset, open_dataset

    dataset = data if isinstance(data, Dataset) else open_dataset(data)
    wanted = set(keys) if keys is not None else None
    bytes_per_image = 3 * image_size * image_size
    budget_images = int(memory_budget_mb * 2**20 // bytes_per_image)
    store = _ImageStore(budget_images, image_size, cache_dir)
    out_keys, captions, meta, skipped = [], [], [], []
    samples = dataset.samples(keys=wanted, verify_images=False)
    for sample in tqdm(samples, desc=f"decode {dataset.path.name}", unit="img", disable=not progress, leave=False):
        try:
            pixels = decode_image(sample.image, image_size)
        except Exception as error:  # PIL raises many types for damaged files
            skipped.append((sample.key, f"image cannot be decoded ({type(error).__name__})"))
            continue
        store.append(pixels)
        out_keys.append(sample.key)
        captions.append(list(sample.captions) or [sample.caption])
        meta.append(dict(sample.meta))
    skipped = list(dataset.skipped) + skipped
    if wanted is not None:
        found = set(out_keys) | {k for k, _ in skipped}
        skipped += [(k, "key not found in the dataset") for k in sorted(wanted - found)]
    if not out_keys:
        raise DataError(f"{dataset.path}: no readable samples to load ({len(skipped)} skipped)")
    return Table(out_keys, store.tensor(), captions, meta, skipped=skipped, images_on_disk=store.memmap is not None)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Encoded bytes -> uint8 [3, size, size]: shorter side resized to size, center crop (as CLIP's eval
    transform), transparency composited on white (drawings on a transparent canvas stay visible)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # lets JPEG decode at a reduced scale: much faster for big photos
        if image.mode in ("RGBA", "LA", "P") or "transparency" in image.info:
            canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
            canvas.alpha_composite(image.convert("RGBA"))
            image = canvas
        image = image.convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                               Image.Resampling.BICUBIC)
        left = (resized.width - size) // 2
        top = (resized.height - size) // 2
        cropped = resized.crop((left, top, left + size, top + size))
    return np.asarray(cropped, dtype=np.uint8).transpose(2, 0, 1)


class _ImageStore:
    """Collects decoded images in RAM up to a budget, then moves everything to a disk-backed memmap."""

    def __init__(self, budget_images: int, size: int, cache_dir):
        self.budget_images, self.size, self.cache_dir = budget_images, size, cache_dir
        self.chunks: list = []
        self.count = 0
        self.memmap = None

    def append(self, pixels: np.ndarray) -> None:
        if self.memmap is None and self.count >= self.budget_images:
            self._spill()
        if self.memmap is not None:
            if self.count == len(self.memmap):
                self._grow()
            self.memmap[self.count] = pixels
        else:
            self.chunks.append(pixels)
        self.count += 1

    def _spill(self) -> None:
        folder = Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(prefix="clipmem_images_", suffix=".u8", dir=folder, delete=False)
        self.path = Path(handle.name)
        handle.close()
        self.memmap = self._open(max(1024, 2 * self.count))
        if self.chunks:
            self.memmap[: self.count] = np.stack(self.chunks)
        self.chunks = []

    def _open(self, rows: int):
        shape = (rows, 3, self.size, self.size)
        with open(self.path, "r+b") as handle:
            handle.truncate(int(np.prod(shape)))
        return np.memmap(self.path, dtype=np.uint8, mode="r+", shape=shape)

    def _grow(self) -> None:
        self.memmap.flush()
        self.memmap = self._open(2 * len(self.memmap))

    def tensor(self) -> torch.Tensor:
        if self.memmap is None:
            if not self.chunks:
                return torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
            return torch.from_numpy(np.stack(self.chunks))
        self.memmap.flush()
        rows = self.memmap[: self.count]
        # The mapping outlives the name: no file is left behind when the table goes away.
        os.unlink(self.path)
        return torch.from_numpy(rows)
