"""train reference models, score CLIPMem for every pair, flag suspect captions

    python cli.py flag --data laion_subset                 # kfold, K=4, default ranking, top 5 %
    python cli.py flag --data laion_subset --reuse --method clipmem --top-frac 0.02

Writes DATA.clipmem/: scores.parquet (every key), flagged.parquet, summary.json, report.html, models/.
"""

from __future__ import annotations

import argparse

from curate.alignment import FORMS
from curate.memorization import DEFAULT_VIEWS
from curate.protocols import PROTOCOLS
from curate.canaries import CANARY_KINDS, DEFAULT_FRACTION
from curate.pipeline import DEFAULT_METHOD
from curate.rankings import ALIASES, AUTO, DEFAULT_RANKING, RANKINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="laion_subset", help="img2dataset output folder")
    parser.add_argument("--out", help="output folder (default: DATA.clipmem next to the data)")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=[AUTO] + list(RANKINGS) + list(ALIASES),
                        help="ranking that decides what is flagged; every score is computed and reported anyway. "
                             "auto: the default, unless another ranking (the learned one included) finds every canary "
                             "kind better on this data, the learned one graded on kinds it was not fitted on; "
                             "learned: a logistic regression over the default's inputs, fitted on the canaries "
                             "against the user's pairs less those the default finds most suspect (cross-fitted; over "
                             f"every score when fitted on --labels reviews) ('default' is an alias of "
                             f"{DEFAULT_RANKING})")
    parser.add_argument("--canaries", type=float, default=DEFAULT_FRACTION, metavar="FRAC",
                        help="plant this fraction of known mismatched pairs (kinds: " + ", ".join(CANARY_KINDS) +
                             "), trained on like every pair and kept out of every output, to grade every ranking "
                             "on this data (estimated AUROC, AP, precision of the flags); 0 turns them off")
    parser.add_argument("--protocol", default="kfold", choices=list(PROTOCOLS),
                        help="kfold: K trainings score every key; paper: f/g on S_S+S_C / S_S+S_I, scores S_C")
    parser.add_argument("--folds", type=int, default=4, help="K for the kfold protocol")
    parser.add_argument("--model", default="clipmem-tiny", help="open_clip architecture or preset for reference models")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per reference model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment, initial weights, views")
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS, help="image augmentations per image")
    parser.add_argument("--form", default="contrastive", choices=list(FORMS), help="alignment form for CLIPMem")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--top-frac", type=float, default=0.05, help="flag this fraction, most suspect first")
    group.add_argument("--threshold", type=float, help="flag rows whose score (ranking scaled to 0-1) is at least this")
    group.add_argument("--precision", type=float, metavar="P",
                       help="flag as many pairs as keep the canary-estimated precision at least P (instead of "
                            "--top-frac); the estimate is rough and mostly low (0.48 below to 0.33 above the truth "
                            "on the detection bench), so this tends to flag fewer pairs than a true precision of P "
                            "would allow")
    parser.add_argument("--reuse", action="store_true", help="score again with the models a previous run saved")
    parser.add_argument("--labels", metavar="DECISIONS_CSV",
                        help="with --reuse: decisions.csv exported from report.html; the learned ranking also learns "
                             "from the reviewed pairs and flags the next page of unreviewed ones (reviewed wrong "
                             "captions stay flagged, fine ones never are)")
    parser.add_argument("--pretrained", metavar="TAG_OR_FILE",
                        help="open_clip pretrained tag or checkpoint file: clipscore becomes that model's cosine "
                             "(LAION's / DataComp's CLIP-score filter as a baseline)")
    parser.add_argument("--pretrained-model", default="ViT-B-32", help="architecture for --pretrained")
    parser.add_argument("--init-from", metavar="TAG_OR_FILE",
                        help="reference models fine-tune from this open_clip checkpoint (of --model) instead of "
                             "training from scratch")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="train the reference models on N pairs drawn from the pool and score every other pair "
                             "by inference (held-out alignment of all K models, neighbours, caption statistics, "
                             "and a predictor fitted on the sample); for pools far larger than one training budget")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from curate.outputs import format_console_summary
    from curate.pipeline import check_flag_options, flag

    check_flag_options(args.method, args.protocol, args.form, args.top_frac, args.threshold, args.views, args.epochs,
                       args.canaries, args.precision)
    result = flag(args.data, args.out, method=args.method, protocol=args.protocol, folds=args.folds,
                  model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  views=args.views, form=args.form, top_frac=args.top_frac, threshold=args.threshold,
                  reuse=args.reuse, pretrained=args.pretrained, pretrained_model=args.pretrained_model,
                  init_from=args.init_from, sample=args.sample, canaries=args.canaries, precision=args.precision, labels=args.labels,
                  progress=not args.no_progress)
    print(format_console_summary(result.summary, result.out))
    return 0
