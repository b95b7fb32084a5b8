"""From per-key measurements to the scores table: every score, lint, the flagged set and its reasons.

Example:
    >>> from curate.flagging import select_flagged
    >>> import pandas as pd
    >>> select_flagged(pd.DataFrame({"score": [0.1, 0.9, 0.5, 0.2], "lint": ["", "", "", "empty"]}), 0.25, None).tolist()
    [False, True, False, True]
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from curate.detection import detection_metrics, top_count_mask, top_fraction_mask
from curate.lint import is_severe, lint_caption, normalize
from curate.rankings import RANKINGS, add_rankings, minmax

# A measurement in its own top tenth is worth naming as a reason.
REASON_PERCENTILE = 0.9
# Detection by how many images carry a pair's caption: (label, fewest, most) images, bounds included.
CAPTION_REPEAT_STRATA = (("unique", 1, 1), ("2-9", 2, 9), ("10-99", 10, 99), ("100+", 100, None))


def build_scores_table(table, scored: list, measures: pd.DataFrame, csl: np.ndarray, method: str, seed: int,
                       pretrained_cosine: np.ndarray | None = None, canary_keys=frozenset()) -> pd.DataFrame:
    """One row per scored key with every score; `score` is `method`'s ranking scaled to [0, 1].

    Caption frequency and lint count the user's captions only: a canary's caption counts as often as the user's
    data carries it (at least once), and planting canaries changes no user pair's statistics.
    """
    primary = [captions[0] for captions in table.captions]
    counts = Counter(normalize(caption) for key, caption in zip(table.keys, primary) if key not in canary_keys)
    rows = table.rows(scored).tolist()
    frame = measures.copy()
    frame.insert(1, "caption", [primary[r] for r in rows])
    frame["clipmem"] = minmax(frame["clipmem_raw"])
    frame["clipscore"] = pretrained_cosine if pretrained_cosine is not None else frame["align_g"]
    frame["csl"] = csl
    frame["random"] = np.random.default_rng(seed).random(len(frame))
    frame["caption_repeats"] = [max(1, counts[normalize(primary[r])]) for r in rows]
    frame["lint"] = ["; ".join(lint_caption(caption, repeats))
                     for caption, repeats in zip(frame["caption"], frame["caption_repeats"])]
    for field in ("category", "injected", "noise", "original_caption"):
        values = [table.meta[r].get(field) for r in rows]
        if any(v is not None for v in values):
            # a pair the noise left alone may have no `injected` field: it was not injected
            frame[field] = [bool(v) for v in values] if field == "injected" else values
    add_rankings(frame)
    frame["score"] = minmax(frame[f"rank_{method}"])
    return frame


def select_flagged(frame: pd.DataFrame, top_frac: float | None, threshold: float | None,
                   count: int | None = None) -> pd.Series:
    """The `count` (or top fraction, or score >= threshold) most suspect rows, plus captions lint finds useless
    on their own."""
    if count is not None:
        by_score = top_count_mask(frame["score"].to_numpy(), count)
    elif threshold is not None:
        by_score = frame["score"].to_numpy() >= threshold
    else:
        by_score = top_fraction_mask(frame["score"].to_numpy(), top_frac or 0.0)
    severe = frame["lint"].map(lambda text: is_severe(text.split("; ")) if text else False).to_numpy()
    return pd.Series(by_score | severe, index=frame.index)


def flagged_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The flagged rows, most suspect first; ties in score broken by key, so the order is the same every run."""
    flagged = frame[frame["flagged"]]
    return flagged.sort_values(["score", "key"], ascending=[False, True], kind="mergesort")


def reasons(frame: pd.DataFrame) -> pd.Series:
    """Why each row looks suspect: the measurements in their own top tenth, and lint findings."""
    checks = [
        ("high memorization (CLIPMem {:.2f})", frame["clipmem"], frame["clipmem_raw"].rank(pct=True)),
        ("low held-out alignment ({:.3f})", frame["clipscore"], (-frame["clipscore"]).rank(pct=True)),
        ("high cumulative training loss ({:.1f})", frame["csl"], frame["csl"].rank(pct=True)),
    ]
    if "align_csls" in frame:
        checks.append(("image and caption each closer to other pairs (corrected alignment {:.2f})", frame["align_csls"],
                       (-frame["align_csls"]).rank(pct=True)))
    texts = []
    for i in range(len(frame)):
        found = [label.format(values.iloc[i]) for label, values, pct in checks if pct.iloc[i] >= REASON_PERCENTILE]
        if frame["lint"].iloc[i]:
            found.append(f"caption lint: {frame['lint'].iloc[i]}")
        if not found:
            found.append(f"high combined suspicion (score {frame['score'].iloc[i]:.2f})")
        texts.append("; ".join(found))
    return pd.Series(texts, index=frame.index)


def detection_report(frame: pd.DataFrame, top_frac: float) -> dict:
    """AUROC / precision / recall of every ranking against injected noise, with AUROC per stratum.

    Each ranking's entry adds `auroc_by_caption_repeats` ({"unique", "2-9", "10-99", "100+"}: pairs whose
    caption is on that many images) and, when the table knows noise types, `auroc_by_noise` (each type's
    injected pairs against all clean pairs); a stratum is reported only where it holds both classes.
    `pairs`: the rows the ranking scores (the others, NaN, are left out, not filled in).

    Example:
        >>> frame = pd.DataFrame({"rank_random": [0.9, 0.2, 0.8, 0.1, 0.3, 0.4],
        ...                       "injected": [True, False, True, False, False, False],
        ...                       "noise": ["boilerplate", None, "within-category", None, None, None],
        ...                       "caption_repeats": [1, 1, 12, 12, 1, 150]})
        >>> entry = detection_report(frame, top_frac=0.34)["random"]
        >>> entry["auroc_by_caption_repeats"], entry["auroc_by_noise"]
        ({'unique': 1.0, '10-99': 1.0}, {'boilerplate': 1.0, 'within-category': 1.0})
    """
    if "injected" not in frame or not frame["injected"].any():
        return {}
    injected = frame["injected"].astype(bool)
    strata = {"auroc_by_caption_repeats": _caption_repeat_strata(frame["caption_repeats"])}
    if "noise" in frame:
        strata["auroc_by_noise"] = _noise_strata(frame["noise"], injected)
    report = {}
    for name in RANKINGS:
        column = f"rank_{name}"
        if column not in frame or frame[column].isna().all():
            continue
        # Only the pairs the ranking scores count: a --sample run has csl and CLIPMem for its sample alone,
        # and filling the rest with any value would grade the fill, not the ranking.
        scored = frame[column].notna()
        values, labels = frame.loc[scored, column], injected[scored]
        if not 0 < labels.sum() < len(labels):
            continue
        entry = {**detection_metrics(values, labels, top_frac), "pairs": int(scored.sum())}
        for key, masks in strata.items():
            entry[key] = {label: detection_metrics(values[mask[scored]], labels[mask[scored]], top_frac)["auroc"]
                          for label, mask in masks.items() if 0 < labels[mask[scored]].sum() < mask[scored].sum()}
        report[name] = entry
    return report


def _caption_repeat_strata(repeats: pd.Series) -> dict:
    """{stratum label: rows whose caption is on that many images}."""
    return {label: (repeats >= fewest) & (repeats <= (most if most is not None else np.inf))
            for label, fewest, most in CAPTION_REPEAT_STRATA}


def _noise_strata(noise: pd.Series, injected: pd.Series) -> dict:
    """{noise type: its injected rows and every clean row}."""
    return {kind: ~injected | noise.eq(kind) for kind in sorted(noise[injected].dropna().unique())}


def modality_means(frame: pd.DataFrame) -> dict:
    """Mean image-side and text-side memorization, overall and for injected against clean pairs."""
    means = {"image_mem": float(frame["image_mem"].mean()), "text_mem": float(np.nanmean(frame["text_mem"]))}
    if "injected" in frame and frame["injected"].any():
        for label, mask in (("injected", frame["injected"]), ("clean", ~frame["injected"])):
            means[f"clipmem_{label}"] = float(frame.loc[mask, "clipmem"].mean())
            means[f"image_mem_{label}"] = float(frame.loc[mask, "image_mem"].mean())
            means[f"text_mem_{label}"] = float(np.nanmean(frame.loc[mask, "text_mem"]))
    return means
