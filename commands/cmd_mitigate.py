"""write a mitigated copy of a dataset (text-aug, multi-caption, remove, text-noise, image-aug)

    python cli.py mitigate --strategy remove --count 100 --by clipmem
    python cli.py mitigate --strategy remove --decisions decisions.csv   # the pairs reviewed wrong caption
    python cli.py mitigate --strategy remove,text-aug --frac 0.01 --n-aug 4 --data laion_subset
    python cli.py mitigate --strategy multi-caption --min-captions 5 --expand
    python cli.py mitigate --strategy text-noise --sigma 0.15
    torchrun --nproc_per_node 4 cli.py mitigate --strategy remove --count 100   # 4 processes, one result

The output (DIR.S, S the strategies joined by '+') is in the input's format, with manifest.parquet
(every input key: kept / changed / removed / unreadable, and why) and mitigation.json (the recipe;
its `training` section is read by `python cli.py train`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from curate.rankings import ALIASES, DEFAULT_RANKING, RANKINGS
from mitigation.base import Options
from mitigation.strategies import (
    GENERAL_OPTIONS,
    STRATEGIES,
    MitigationResult,
    mitigate,
)

DEFAULTS = Options()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.epilog = ("strategies (combined ones run in this order, whatever order they are given in):\n"
                     + "\n".join(f"  {s.name:14} {s.help}" for s in STRATEGIES.values()))
    parser.add_argument("--strategy", required=True, metavar="S[,S...]",
                        help=f"one or more of {', '.join(STRATEGIES)}, comma-separated")
    parser.add_argument("--data", default="laion_subset", metavar="DIR", help="img2dataset output folder (default: laion_subset)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: DIR.S, S the strategies joined by '+')")
    parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    parser.add_argument("--expand", action="store_true",
                        help="also write OUT.expanded/: a webdataset with one record per caption (keys KEY_c0, KEY_c1, ...) "
                             "for trainers that read only the .txt, such as open_clip's")
    parser.add_argument("--seed", type=int, metavar="N", default=DEFAULTS.seed, help="seed of the augmentations (default: 0)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--no-verify", dest="verify_images", action="store_false",
                        help="do not decode every image again (flag did); with --strategy remove alone, webdataset "
                             "samples are then copied unread as byte ranges, near disk speed: the tar structure, "
                             "image, caption and UTF-8 are still checked, the json is not parsed")

    remove = parser.add_argument_group("remove")
    remove.add_argument("--count", type=int, metavar="N", help="remove the N top-ranked samples (the paper: ~100 helps)")
    remove.add_argument("--frac", type=float, metavar="F", help="remove this fraction of the samples, top-ranked first")
    remove.add_argument("--threshold", type=float, metavar="T",
                        help="remove samples scoring at least T (at most T for --by clipscore)")
    remove.add_argument("--by", default=DEFAULTS.by, choices=list(RANKINGS) + list(ALIASES),
                        help="ranking, as flag --method names them: combined-csls (flag's default), "
                             "combined-neighbour, combined, clipmem, clipscore (lowest alignment removed first), csl "
                             "(cumulative sample loss), neighbour, random; "
                             f"'default' is an alias of {DEFAULT_RANKING} (default: {DEFAULT_RANKING})")
    remove.add_argument("--scores", metavar="PATH", help="the flag command's scores table (default: DIR.clipmem/scores.parquet)")
    remove.add_argument("--decisions", metavar="FILE",
                        help="decisions.csv exported from report.html: removes the pairs reviewed 'wrong caption' "
                             "(alone, or besides the top N with --count/--frac/--threshold); a pair reviewed 'fine' "
                             "is never removed by the ranking")

    text_aug = parser.add_argument_group("text-aug")
    text_aug.add_argument("--n-aug", type=int, metavar="N", default=DEFAULTS.n_aug,
                          help="EDA augmentations added per sample (default: 4)")
    text_aug.add_argument("--paraphrase-model", metavar="DIR",
                          help="also add paraphrases from a local seq2seq model folder (save_pretrained)")
    text_aug.add_argument("--paraphrase-n", type=int, metavar="N", default=DEFAULTS.paraphrase_n,
                          help="paraphrases per sample (default: 1)")
    text_aug.add_argument("--paraphrase-prefix", metavar="TEXT", default=DEFAULTS.paraphrase_prefix,
                          help="text put before each caption, e.g. 'paraphrase: ' for T5 paraphrasers (default: none)")

    multi = parser.add_argument_group("multi-caption")
    multi.add_argument("--caption-fields", metavar="F[,F...]", default="",
                       help="more json/metadata fields holding captions, besides captions, title, description, keywords")
    multi.add_argument("--min-captions", type=int, metavar="N", default=DEFAULTS.min_captions,
                       help="fill up with EDA augmentations to this many captions per image (default: 0, none)")

    noise = parser.add_argument_group("text-noise")
    noise.add_argument("--sigma", type=float, metavar="SIGMA", default=DEFAULTS.sigma,
                       help="std of the Gaussian noise on text embeddings (default: 0.15, the paper's best)")


def run(args: argparse.Namespace) -> int:
    values = dict(vars(args))
    values["caption_fields"] = tuple(f.strip() for f in (args.caption_fields or "").split(",") if f.strip())
    names = {f.name for f in dataclasses.fields(Options)} - GENERAL_OPTIONS
    options = {name: values[name] for name in names if name in values}
    command = "python cli.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["mitigate"] else ""
    result = mitigate(args.data, args.strategy, args.out, overwrite=args.overwrite, expand=args.expand,
                      progress=args.progress, verify_images=args.verify_images, command=command, **options)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report
        print(report(result))
    return 0


def report(result: MitigationResult) -> str:
    counts = result.counts
    training = result.recipe["training"]
    lines = [
        f"wrote {result.path} ({result.recipe['source']['format']}) from {result.recipe['source']['path']}",
        f"  input {sum(counts.values())}: kept {counts['kept']}, changed {counts['changed']}, "
        f"removed {counts['removed']}, unreadable {counts['unreadable']}",
        f"  manifest: {result.manifest_path}",
        f"  kept keys: {result.kept_keys.path} ({result.kept_keys.describe()})",
        f"  recipe: {result.recipe_path} (training: " + ", ".join(f"{k}={v}" for k, v in training.items()) + ")",
    ]
    for entry in result.recipe["strategies"]:
        if entry["stats"]:
            lines.append(f"  {entry['name']}: " + ", ".join(f"{k} {v}" for k, v in entry["stats"].items()))
    if result.expanded:
        e = result.expanded
        lines.append(f"  expanded: {e.path} ({e.records} records from {e.samples} samples); open_clip: "
                     f"--train-data '{e.train_data()}' --train-num-samples {e.records} --dataset-type webdataset")
    return "\n".join(lines)
