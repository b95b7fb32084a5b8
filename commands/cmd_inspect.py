"""summarize an img2dataset folder: format, shards, samples, failures, captions

    python cli.py inspect --data laion_subset
    python cli.py inspect --data laion_subset --no-verify --examples 10
"""

from __future__ import annotations

import argparse

from dataio.summary import EXAMPLE_ROWS, format_summary, summarize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="laion_subset", help="img2dataset output folder")
    parser.add_argument("--examples", type=int, default=EXAMPLE_ROWS, help="example rows to print")
    parser.add_argument("--no-verify", action="store_true", help="skip decoding every image (faster)")


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.data, examples=args.examples, verify_images=not args.no_verify)
    print(format_summary(summary))
    return 0


