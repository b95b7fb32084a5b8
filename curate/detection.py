"""How well a suspicion score finds known-bad pairs: AUROC, AUPRC, precision and recall among the top fraction.

Example:
    >>> from curate.detection import detection_metrics
    >>> detection_metrics([0.9, 0.8, 0.1, 0.2], [True, False, False, False], top_frac=0.25)
    {'auroc': 1.0, 'auprc': 1.0, 'precision': 1.0, 'recall': 1.0, 'flagged': 1, 'positives': 1}
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def top_fraction_mask(scores, top_frac: float) -> np.ndarray:
    """The ceil(top_frac * n) highest scores; ties broken by position so the count is exact."""
    scores = np.asarray(scores, dtype=float)
    return top_count_mask(scores, int(np.ceil(top_frac * len(scores))) if top_frac > 0 else 0)


def top_count_mask(scores, count: int) -> np.ndarray:
    """The `count` highest scores; ties broken by position."""
    scores = np.asarray(scores, dtype=float)
    mask = np.zeros(len(scores), dtype=bool)
    if count:
        mask[np.argsort(-scores, kind="stable")[:count]] = True
    return mask


def detection_metrics(scores, labels, top_frac: float) -> dict:
    """AUROC of `scores` (higher = more suspect) against boolean `labels`, and precision/recall at top_frac."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    flagged = top_fraction_mask(scores, top_frac)
    positives = int(labels.sum())
    hits = int((flagged & labels).sum())
    both_classes = 0 < positives < len(labels)
    auroc = float(roc_auc_score(labels, scores)) if both_classes else float("nan")
    auprc = float(average_precision_score(labels, scores)) if both_classes else float("nan")
    return {
        "auroc": round(auroc, 4),
        "auprc": round(auprc, 4),
        "precision": round(hits / max(int(flagged.sum()), 1), 4),
        "recall": round(hits / max(positives, 1), 4),
        "flagged": int(flagged.sum()),
        "positives": positives,
    }
