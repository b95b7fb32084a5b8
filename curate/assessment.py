"""From the scores of user pairs and canaries together to the user's scores table, the chosen ranking and how far
its flags can be trusted (summary.json's `canaries` entry).

Example (a table where csl finds the canaries and clipscore does not):
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> n, c = 300, 40
    >>> frame = pd.DataFrame({"key": [f"{i:04d}" for i in range(n)] + [f"canary-{i:06d}" for i in range(c)],
    ...                       "caption": "x", "lint": "", "clipmem_raw": rng.random(n + c),
    ...                       "csl": np.r_[rng.random(n), 1 + rng.random(c)], "clipscore": rng.random(n + c)})
    >>> frame["rank_csl"], frame["rank_clipscore"] = frame["csl"], -frame["clipscore"]
    >>> spec = pd.DataFrame({"key": frame["key"][n:], "kind": "random-caption"})
    >>> result = assess(frame, spec, "auto", seed=0)
    >>> result.chosen, len(result.frame), result.summary["count"]
    ('csl', 300, 40)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from curate import trust
from curate.decisions import FINE, WRONG_CAPTION
from curate.rankings import AUTO, DEFAULT_RANKING, minmax
from dataio.errors import UsageError


@dataclass
class Assessment:
    frame: pd.DataFrame     # the user's rows only, `score` from the chosen ranking
    chosen: str             # the ranking that decides what is flagged
    summary: dict           # summary.json's `canaries` entry
    flag_count: int | None  # how many to flag for a --precision target (None: top fraction or threshold)
    canaries: pd.DataFrame | None = None  # the canaries' rows with every score and their kind, never written
    posterior: np.ndarray | None = None  # each user pair's estimated chance of being mismatched (frame order)

    def flagged_precision(self, flagged: np.ndarray) -> float | None:
        """Estimated precision of a flagged set (a mask over the user's rows)."""
        if self.posterior is None or not flagged.any() or not np.isfinite(self.posterior[flagged]).any():
            return None
        return round(float(np.nanmean(self.posterior[flagged])), 4)


def assess(frame: pd.DataFrame, spec: pd.DataFrame, method: str, seed: int,
           precision: float | None = None, decisions: pd.DataFrame | None = None) -> Assessment:
    """Grade every ranking on the canaries, learn one from them, choose (`method` "auto") and drop the canaries.

    decisions (curate.decisions rows: key, decision): pairs a person reviewed. The learned ranking then learns
    from them (wrong captions as mismatched; from the reviews alone once 10 are wrong, beside the canaries before),
    and grades leave them out."""
    labels = frame["key"].isin(set(spec["key"])).to_numpy()
    kinds = frame["key"].map(dict(zip(spec["key"], spec["kind"]))).fillna("")
    reviewed = frame["key"].map(dict(zip(decisions["key"], decisions["decision"])) if decisions is not None
                                else {}).fillna("")
    count = int(labels.sum())
    graded = count >= trust.MIN_CANARIES
    if precision is not None and not graded:
        raise UsageError(f"--precision needs at least {trust.MIN_CANARIES} canaries to estimate precision from; "
                         f"{count} were planted: raise --canaries or use --top-frac")
    wrong = reviewed.eq(WRONG_CAPTION).to_numpy()
    # Enough reviewed wrong captions: learn from the reviews alone. Beside canaries they helped less (bench/review.py,
    # README): the canaries, many more, pull the fit towards what tells them apart from the data's own noise.
    from_reviews = wrong.sum() >= trust.MIN_CANARIES // 2
    mismatched = wrong if from_reviews else labels | wrong
    fit = ~labels if from_reviews else np.ones(len(frame), dtype=bool)
    features = trust.FEATURES if from_reviews else trust.CANARY_FEATURES
    unreviewed = reviewed.eq("").to_numpy()
    left_out = _likely_mismatched(frame, labels, mismatched, unreviewed, from_reviews)
    if mismatched.sum() >= trust.MIN_CANARIES // 2:  # a learned model needs a few positives per cross-fitting fold
        learned = np.full(len(frame), np.nan)
        learned[fit] = trust.cross_fitted_scores(frame[fit], mismatched[fit], seed, features=features,
                                                 left_out=left_out[fit])
        frame["rank_learned"] = learned
    grades = trust.grade_rankings(frame[unreviewed], labels[unreviewed], kinds[unreviewed], seed) if graded else {}
    if "learned" in grades and not from_reviews:  # from reviews, every canary kind is unseen already
        grades["learned"]["auroc_unseen_kind"] = trust.transfer_by_kind(
            frame[unreviewed], labels[unreviewed], kinds[unreviewed], seed,
            left_out=left_out[unreviewed])
    chosen = _choose(method, grades, frame)
    user = frame[~labels].copy()
    if decisions is not None:
        user["reviewed"] = reviewed[~labels].to_numpy()
    user["clipmem"] = minmax(user["clipmem_raw"])  # normalized over the user's pairs, as without canaries
    user["score"] = minmax(user[f"rank_{chosen}"])
    warnings = trust.warnings_for(grades, chosen, count) if count or method == AUTO else []
    if method not in (AUTO, chosen):
        warnings.append(f"--method {method} needs at least {trust.MIN_CANARIES // 2} canaries; ranked by {chosen}")
    summary = {"count": count, "by_kind": kinds[labels].value_counts().sort_index().to_dict(),
               "method_requested": method, "chosen": chosen, "graded": graded, "rankings": grades,
               "warnings": warnings}
    if method == AUTO and grades:
        summary["auto_reason"] = trust.auto_reason(grades, chosen, DEFAULT_RANKING)
    if "rank_learned" in frame:
        summary["learned_weights"] = trust.learned_weights(frame[fit], mismatched[fit], features, left_out[fit])
        summary["learned_from"] = "reviews" if from_reviews else "canaries" + (" and reviews" if wrong.any() else "")
        summary["learned_left_out"] = int(left_out.sum())
    planted = frame[labels].assign(canary_kind=kinds[labels].to_numpy())
    if not graded:
        return Assessment(user, chosen, summary, None, planted)
    chosen_scores = frame[f"rank_{chosen}"].to_numpy(dtype=float)
    # over every user pair, reviewed or not: taking the reviewed top out leaves no pair above the canaries
    share = trust.noise_share(chosen_scores[~labels], chosen_scores[labels])
    posterior = trust.mismatch_posterior(chosen_scores[~labels], chosen_scores[labels], share)
    decided = reviewed[~labels].to_numpy()
    posterior = np.where(decided == WRONG_CAPTION, 1.0, np.where(decided == FINE, 0.0, posterior))
    user["mismatch_estimate"] = posterior
    summary["noise_rate_estimate"] = round(share, 4) if np.isfinite(share) else None
    for grade in grades.values():
        grade["auroc_against_clean"] = trust.against_clean(grade["auroc"], share)
    flag_count = trust.count_for_precision(user["score"].to_numpy(), posterior, precision) if precision else None
    if flag_count == 0:
        summary["warnings"].append(f"--precision {precision}: no set of flags is estimated that precise (the "
                                   "estimate leans low); nothing flagged: ask for less or use --top-frac")
    return Assessment(user, chosen, summary, flag_count, planted, posterior)


def _likely_mismatched(frame: pd.DataFrame, labels: np.ndarray, mismatched: np.ndarray, unreviewed: np.ndarray,
                       from_reviews: bool) -> np.ndarray:
    """The user pairs a learned model is not fitted on as clean: those the default ranking finds most suspect, as
    many as the canaries say the data holds mismatched (trust.likely_mismatched). None of them when the model
    learns from reviews, or without an estimate."""
    column = f"rank_{DEFAULT_RANKING}"
    none = np.zeros(len(frame), dtype=bool)
    if from_reviews or column not in frame:
        return none
    scores = frame[column].to_numpy(dtype=float)
    share = trust.noise_share(scores[~labels], scores[labels])  # every user pair, as for the precision estimate
    left_out = trust.likely_mismatched(scores, ~mismatched & unreviewed, share)
    return none if left_out is None else left_out


def _choose(method: str, grades: dict, frame: pd.DataFrame) -> str:
    """`auto`: the default unless a ranking finds every canary kind better (trust.best_ranking); a ranking the table
    cannot compute falls back to the default (learned with too few canaries)."""
    chosen = (trust.best_ranking(grades, DEFAULT_RANKING) or DEFAULT_RANKING) if method == AUTO else method
    return chosen if f"rank_{chosen}" in frame else DEFAULT_RANKING
