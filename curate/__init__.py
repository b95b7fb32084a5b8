"""Memorization scoring and flagging: protocols, reference models, CLIPMem, rankings, caption lint, the report.

    curate.flag(data, ...) -> FlagResult    the whole `flag` command as one call (curate.pipeline)
    curate.sampling          --sample: train on a sample, score the rest of the pool by inference, shard by shard
    curate.neighbours        the neighbour score (LEMoN-style) from held-out embeddings
    curate.protocols         which keys each reference model trains on (kfold, paper)
    curate.reference_models  train (or reload) the models a plan asks for
    curate.memorization      batched embeddings of views; f-minus-g CLIPMem; csl per key
    curate.alignment         alignment forms from embeddings (contrastive, cosine, loss)
    curate.rankings          suspicion rankings by name (combined, clipmem, clipscore, csl, random)
    curate.lint              model-free caption checks
    curate.flagging          the scores table, the flagged set and its reasons
    curate.detection         AUROC / precision / recall against injected ground truth
    curate.outputs           what flag writes and prints; curate.report_html the gallery
"""

import dataio  # noqa: F401  (sets the OpenMP policy before torch loads)
from curate.pipeline import FlagResult, flag  # noqa: E402

__all__ = ["flag", "FlagResult"]
