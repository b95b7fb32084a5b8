"""Summarize an img2dataset folder: format, shards, samples, failed downloads, captions, categories.

Example:
    >>> from dataio.summary import summarize
    >>> summarize("laion_subset")["samples"]          # doctest: +SKIP
    6879
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from dataio.reader import open_dataset

EXAMPLE_ROWS = 5


def summarize(path, examples: int = EXAMPLE_ROWS, verify_images: bool = True) -> dict:
    """One pass over the dataset; returns counts and caption statistics as a dict."""
    dataset = open_dataset(path)
    lengths, captions_per_sample = [], []
    categories, caption_counts = Counter(), Counter()
    injected = 0
    rows = []
    for sample in tqdm(dataset.samples(verify_images=verify_images), desc="reading", unit=" samples", leave=False):
        lengths.append(len(sample.caption.split()))
        captions_per_sample.append(len(sample.captions))
        caption_counts[sample.caption] += 1
        if "category" in sample.meta:
            categories[str(sample.meta["category"])] += 1
        injected += bool(sample.meta.get("injected"))
        if len(rows) < examples:
            rows.append((sample.key, sample.caption, sample.meta.get("category", "")))
    failed = Counter()
    for shard in dataset.shards:
        stats = dataset.stats(shard)
        failed["failed_to_download"] += stats.get("failed_to_download", 0)
        failed["failed_to_resize"] += stats.get("failed_to_resize", 0)
    skipped_reasons = Counter(_reason_kind(reason) for _, reason in dataset.skipped)
    return {
        "path": str(Path(path)),
        "format": dataset.format,
        "shards": len(dataset.shards),
        "samples": len(lengths),
        "skipped": len(dataset.skipped),
        "skipped_reasons": dict(skipped_reasons),
        "skipped_examples": dataset.skipped[:5],
        "failed_downloads": failed["failed_to_download"],
        "failed_resizes": failed["failed_to_resize"],
        "caption_words": _describe(lengths),
        "captions_per_sample": _describe(captions_per_sample),
        "distinct_captions": len(caption_counts),
        "most_repeated_captions": caption_counts.most_common(3),
        "empty_captions": sum(1 for n in lengths if n == 0),
        "categories": dict(categories.most_common()),
        "injected": injected,
        "examples": rows,
    }


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def _describe(values: list) -> dict:
    if not values:
        return {"min": 0, "median": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "median": statistics.median(values),
            "mean": round(statistics.fmean(values), 2), "max": max(values)}


def format_summary(s: dict) -> str:
    words, per = s["caption_words"], s["captions_per_sample"]
    lines = [
        f"{s['path']}: {s['format']} format, {s['shards']} shards",
        f"  samples            {s['samples']}",
        f"  skipped (bad)      {s['skipped']}" + (f"  {s['skipped_reasons']}" if s["skipped"] else ""),
        f"  failed downloads   {s['failed_downloads']} (+{s['failed_resizes']} failed resizes)",
        f"  caption words      min {words['min']}  median {words['median']}  mean {words['mean']}  max {words['max']}",
        f"  captions/sample    min {per['min']}  median {per['median']}  mean {per['mean']}  max {per['max']}",
        f"  distinct captions  {s['distinct_captions']}  (empty: {s['empty_captions']})",
    ]
    for caption, count in s["most_repeated_captions"]:
        if count > 1:
            lines.append(f"    x{count:<5} {caption[:80]!r}")
    if s["injected"]:
        lines.append(f"  injected swaps     {s['injected']}")
    if s["categories"]:
        top = ", ".join(f"{name} {count}" for name, count in list(s["categories"].items())[:8])
        lines.append(f"  categories         {len(s['categories'])}: {top}" + (" ..." if len(s["categories"]) > 8 else ""))
    for key, reason in s["skipped_examples"]:
        lines.append(f"  skipped {key}: {reason}")
    lines.append("  examples:")
    for key, caption, category in s["examples"]:
        lines.append(f"    {key}  [{category}]  {caption[:90]!r}")
    return "\n".join(lines)
