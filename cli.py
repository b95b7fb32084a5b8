"""clipmem: memorization-aware curation of image-caption data for CLIP training.

    python cli.py demo-data                    build the built-in laion_subset
    python cli.py inspect --data laion_subset  what a dataset folder holds
    python cli.py flag --data laion_subset     score memorization, flag suspect pairs
    python cli.py mitigate --strategy text-aug write a mitigated copy
    python cli.py tradeoff --quick             retrain per strategy, utility vs memorization
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dataio.errors import DataError, UsageError

# Command name -> module commands/cmd_<name>.py (dashes as underscores); a module is imported only when its
# command runs, so `--help` stays fast.
COMMANDS = ("demo-data", "inspect", "train", "evaluate", "flag", "mitigate", "tradeoff")

HELP = {
    "demo-data": "build the built-in laion_subset (Open Clip Art via a local server and img2dataset)",
    "inspect": "summarize an img2dataset folder: format, shards, samples, failures, captions",
    "train": "train a CLIP model (open_clip) on a dataset folder",
    "evaluate": "measure retrieval, zero-shot and linear-probe utility of a saved model",
    "flag": "train reference models, score CLIPMem for every pair, flag suspect captions",
    "mitigate": "write a mitigated copy of a dataset (text-aug, multi-caption, remove, text-noise, image-aug)",
    "tradeoff": "retrain under each strategy and report utility against memorization",
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        child = sub.add_parser(name, help=HELP[name], description=HELP[name],
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == command:
            command_module(name).add_arguments(child)
    return parser


def command_module(name: str):
    return importlib.import_module("commands.cmd_" + name.replace("-", "_"))


def main(argv: list | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return command_module(args.command).run(args)
    except (UsageError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
