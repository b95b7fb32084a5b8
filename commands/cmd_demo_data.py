"""build the built-in laion_subset (Open Clip Art via a local server and img2dataset)

    python cli.py demo-data                                   # all drawings, 64 px, webdataset
    python cli.py demo-data --inject-swaps 0.05               # 5 % of captions swapped across categories
    python cli.py demo-data --inject-swaps 0.1 --noise boilerplate   # 10 % replaced by "IMG_1234.jpg" and co.
    python cli.py demo-data --source synthetic --n 500 --out shapes

The source images are staged, listed in a url+caption parquet, served on 127.0.0.1 and downloaded with
img2dataset, so the result is a genuine img2dataset output folder.
"""

from __future__ import annotations

import argparse
import os

from demo.build import (
    DEFAULT_NOISE,
    FORMATS,
    MAX_INJECT_RATE,
    MIN_INJECT_RATE,
    NOISE_TYPES,
    SOURCES,
    build,
)
from demo.staging import DEFAULT_SYNTHETIC_N


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="laion_subset", help="output folder (img2dataset layout)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"number of samples; None: all distinct drawings ({DEFAULT_SYNTHETIC_N} for synthetic)")
    parser.add_argument("--image-size", type=int, default=64, help="side of the square output images, in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed for sample choice, order and caption swaps")
    parser.add_argument("--inject-swaps", type=float, default=0.0, metavar="FRAC",
                        help=f"fraction of captions replaced with --noise: 0 (none) or {MIN_INJECT_RATE} to "
                             f"{MAX_INJECT_RATE}; the json records injected, noise and original_caption")
    parser.add_argument("--noise", choices=NOISE_TYPES, default=DEFAULT_NOISE,
                        help="what replaces a caption: "
                             + "; ".join(f"{name}: {text}" for name, text in NOISE_TYPES.items()))
    parser.add_argument("--source", choices=SOURCES, default="openclipart",
                        help="Open Clip Art drawings (Debian packages) or synthetic shapes (no downloads)")
    parser.add_argument("--format", choices=FORMATS, default="webdataset", help="img2dataset output format")
    parser.add_argument("--processes", type=int, default=min(4, os.cpu_count() or 1),
                        help="processes for image preparation and img2dataset")
    parser.add_argument("--shard-size", type=int, default=None,
                        help="samples per shard; None: a quarter of the samples, between 50 and 1000")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--cache-dir", default=None,
                        help="where Open Clip Art is downloaded if not installed; None: $XDG_CACHE_HOME/clipmem/openclipart")


def run(args: argparse.Namespace) -> int:
    summary = build(
        args.out, n=args.n, image_size=args.image_size, seed=args.seed, inject_swaps=args.inject_swaps,
        source=args.source, output_format=args.format, processes=args.processes,
        samples_per_shard=args.shard_size, overwrite=args.overwrite, cache_dir=args.cache_dir,
        noise=args.noise,
    )
    print(summary.text())
    return 0


