"""Train reference CLIP models, score CLIPMem for every pair, and flag suspect (mis-captioned) pairs.

    python cli.py flag --data laion_subset                 # kfold, K=4, default ranking, top 5 %
    python cli.py flag --data laion_subset --reuse --method clipmem --top-frac 0.02

Writes DIR.clipmem/: scores.parquet (every key), flagged.parquet, summary.json, report.html, models/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from curate import flagging, memorization, reporting
from curate.alignment import FORMS
from curate.errors import UsageError
from curate.protocols import kfold_plan, paper_plan
from curate.reference_models import load_reference_models, train_reference_models
from curate.scores import DEFAULT_RANKING, RANKINGS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="laion_subset", help="img2dataset output folder")
    parser.add_argument("--out", help="output folder (default: DATA.clipmem next to the data)")
    parser.add_argument("--method", default=DEFAULT_RANKING, choices=list(RANKINGS),
                        help="ranking that decides what is flagged; every score is computed and reported anyway")
    parser.add_argument("--protocol", default="kfold", choices=["kfold", "paper"],
                        help="kfold: K trainings score every key; paper: f/g on S_S+S_C / S_S+S_I, scores S_C")
    parser.add_argument("--folds", type=int, default=4, help="K for the kfold protocol")
    parser.add_argument("--model", default="clipmem-tiny", help="open_clip architecture or preset for reference models")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per reference model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment, initial weights, views")
    parser.add_argument("--views", type=int, default=memorization.DEFAULT_VIEWS, help="image augmentations per image")
    parser.add_argument("--form", default="contrastive", choices=list(FORMS), help="alignment form for CLIPMem")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--top-frac", type=float, default=0.05, help="flag this fraction, most suspect first")
    group.add_argument("--threshold", type=float, help="flag rows whose score (ranking scaled to 0-1) is at least this")
    parser.add_argument("--reuse", action="store_true", help="score again with the models a previous run saved")
    parser.add_argument("--pretrained", help="open_clip pretrained tag: clipscore becomes that model's cosine")
    parser.add_argument("--pretrained-model", default="ViT-B-32", help="architecture for --pretrained")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    out = Path(args.out) if args.out else Path(str(Path(args.data).resolve()) + ".clipmem")
    result = flag_dataset(args, out)
    print(reporting.format_console_summary(result["summary"], out))
    return 0


def _check_options(args: argparse.Namespace) -> None:
    if not 0 < args.top_frac < 1:
        raise UsageError(f"--top-frac must be between 0 and 1, got {args.top_frac}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError(f"--threshold applies to the 0-1 score; got {args.threshold}")
    if args.views < 1 or args.epochs < 1:
        raise UsageError("--views and --epochs must be at least 1")


def flag_dataset(args: argparse.Namespace, out: Path) -> dict:
    from train.config import TrainConfig
    from train.data import load_table

    progress = not args.no_progress
    timings = {}
    started = time.time()
    table = load_table(args.data, progress=progress)
    timings["load_s"] = round(time.time() - started, 1)
    if len(table) == 0:
        raise UsageError(f"{args.data}: no readable samples to score")
    if len({c[0] for c in table.captions}) == 1:
        raise UsageError(f"{args.data}: every caption is identical; there is nothing to tell apart")

    models_folder = out / "models"
    started = time.time()
    if args.reuse:
        plan, config, models, csl = load_reference_models(models_folder, table.keys)
        train_seconds = []
    else:
        plan = (kfold_plan(table.keys, args.folds, args.seed) if args.protocol == "kfold"
                else paper_plan(table.keys, args.seed))
        config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed)
        models, csl, train_seconds = train_reference_models(table, plan, config, models_folder, progress)
    timings["train_s"] = round(time.time() - started, 1)

    started = time.time()
    text_views = memorization.single_caption_views(table, plan.scored, args.seed)
    per_model = [
        memorization.measure_model(model, tokenizer, table, plan.scored, model_plan.negative_keys, args.views,
                                   args.seed, text_views, progress)
        for (model, tokenizer), model_plan in zip(models, plan.models)
    ]
    measures = memorization.combine_models(per_model, plan, args.form)
    pretrained = _pretrained_cosine(args, table, plan.scored) if args.pretrained else None
    frame = flagging.build_scores_table(table, plan.scored, measures, memorization.cumulative_losses(csl, plan),
                                        args.method, args.seed, pretrained)
    frame["flagged"] = flagging.select_flagged(frame, args.top_frac, args.threshold)
    frame["reasons"] = flagging.reasons(frame)
    timings["score_s"] = round(time.time() - started, 1)
    timings["train_s_per_model"] = [round(s, 1) for s in train_seconds]

    summary = reporting.summary(args, table, plan, config, frame, timings)
    reporting.write_outputs(out, frame, summary, table, args.data)
    return {"summary": summary, "frame": frame}


def _pretrained_cosine(args, table, scored: list) -> np.ndarray:
    from train.models import create_model

    model, tokenizer, _ = create_model(args.pretrained_model, pretrained=args.pretrained)
    measures = memorization.measure_model(model, tokenizer, table, scored, scored[:2], views=1, seed=args.seed,
                                          progress=not args.no_progress)
    return measures.cosine

