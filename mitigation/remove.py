"""`remove`: drop the top-ranked samples of the `flag` command's scores, by count, fraction or threshold,
and the pairs a reviewer marked *wrong caption* in report.html (`decisions`, mitigation.reviewed).

The scores table (`DIR.clipmem/scores.parquet` beside the dataset unless given) has one row per key;
`--by` names a ranking of curate.rankings (the names `flag --method` takes), whose column is read from
the table. Every ranking puts the most suspect first: high combined score, high CLIPMem, high
cumulative loss, and LOW held-out alignment (`clipscore`, removed lowest first as CLIP-score
filtering does). The paper's finding: removing the ~100 most memorized pairs helps,
removing thousands hurts. A pair reviewed *fine* is never removed by the ranking (the next one is).
Keys are positions, not identities: the scores' and the decisions' captions are compared with the
data's (dataio.keyed) before anything is written.

Example:
    >>> from dataio.reader import open_dataset
    >>> from mitigation.base import Options
    >>> step = remove_top_scored(open_dataset("laion_subset"), Options(count=100, by="clipmem"))  # doctest: +SKIP
    >>> step.options["cutoff"]                                                                     # doctest: +SKIP
    0.83
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from curate.rankings import RANKINGS, resolve_ranking
from dataio import paths
from dataio.errors import DataError, UsageError
from dataio.keyed import check_captions, data_captions
from dataio.reader import Dataset, Sample
from dataio.writer import Keep, Remove
from mitigation.base import Options, Step, count
from mitigation.reviewed import REMOVED_REASON, SPARED_REASON, Reviewed, load_reviewed


def load_scores(path, data_dir, column: str) -> pd.Series:
    """The `column` of the scores table indexed by key (str); UsageError/DataError name the file."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no scores file; run `python cli.py flag --data {data_dir}` first (or give --scores PATH)")
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read the scores table ({error}); rerun `python cli.py flag --data {data_dir}`") from None
    missing = [name for name in ("key", column) if name not in table.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} (has {', '.join(map(str, table.columns))}); "
                        f"score it again without training (`python cli.py flag --data {data_dir} --reuse`) or choose "
                        "another --by")
    keys = table["key"].astype(str)
    if keys.duplicated().any():
        raise DataError(f"{path}: key {keys[keys.duplicated()].iloc[0]} appears more than once; rerun flag")
    values = pd.to_numeric(table[column], errors="coerce")
    values.index = keys
    if values.notna().sum() == 0:
        raise DataError(f"{path}: column {column} has no values; flag did not compute it, choose another --by")
    return values


def dataset_keys(dataset: Dataset) -> set:
    """Keys of the dataset's downloaded samples, from the shard metadata where it lists them."""
    keys: set = set()
    for shard in dataset.shards:
        listed = dataset.listed_success_keys(shard)
        if not listed:
            listed = {record.key for record in dataset.shard_records(shard, verify_images=False)}
        keys |= listed
    return keys


def select_removals(values: pd.Series, high_is_suspect: bool, count_: int | None = None,
                    frac: float | None = None, threshold: float | None = None) -> pd.Series:
    """The removed keys' scores, most suspect first. Ties break by key, so reruns remove the same keys.

    >>> scores = pd.Series([0.9, 0.1, 0.5], index=["a", "b", "c"])
    >>> list(select_removals(scores, True, count_=2).index), list(select_removals(scores, False, threshold=0.5).index)
    (['a', 'c'], ['b', 'c'])
    """
    ranked = pd.DataFrame({"key": values.index, "value": values.to_numpy()}).dropna()
    ranked = ranked.sort_values(["value", "key"], ascending=[not high_is_suspect, True], kind="mergesort")
    if threshold is not None:
        beyond = ranked.value >= threshold if high_is_suspect else ranked.value <= threshold
        ranked = ranked[beyond]
    else:
        ranked = ranked.head(count_ if count_ is not None else int(round(frac * len(values))))
    return pd.Series(ranked.value.to_numpy(), index=ranked.key.to_numpy())


def has_amount(options: Options) -> bool:
    return any(getattr(options, name) is not None for name in ("count", "frac", "threshold"))


def check_amount(options: Options) -> None:
    """One amount for the ranking; none at all only when reviewed decisions say what goes."""
    given = [name for name in ("count", "frac", "threshold") if getattr(options, name) is not None]
    if len(given) > 1 or (not given and not options.decisions):
        what = "none" if not given else " and ".join(f"--{name}" for name in given)
        raise UsageError(f"remove needs exactly one of --count N, --frac F or --threshold T, or --decisions FILE "
                         f"alone (got {what})")
    if options.count is not None and options.count < 0:
        raise UsageError(f"--count must be 0 or more, got {options.count}")
    if options.frac is not None and not 0 <= options.frac <= 1:
        raise UsageError(f"--frac must be between 0 and 1, got {options.frac}")
    if options.threshold is not None and not math.isfinite(options.threshold):
        raise UsageError(f"--threshold must be a finite number, got {options.threshold}")
    resolve_ranking(options.by)


def _describe(options: Options, column: str, high_is_suspect: bool) -> str:
    if options.threshold is not None:
        return f"{column} {'>=' if high_is_suspect else '<='} {options.threshold:g}"
    amount = options.count if options.count is not None else f"{options.frac:g} of the data"
    return f"{'top' if high_is_suspect else 'bottom'} {amount} by {column}"


@dataclass(frozen=True)
class Ranked:
    """What the ranking removes, and what it needs to decide the rest."""

    removals: pd.Series  # key -> score, most suspect first
    scored: frozenset
    spared: frozenset  # pairs reviewed fine that the ranking alone would have removed
    rule: str
    column: str
    high_is_suspect: bool
    scores_path: Path


def scored_captions(path: Path, data_dir) -> dict:
    """key -> the caption flag scored, to check the scores belong to the data they are applied to."""
    if "caption" not in pq.read_schema(path).names:
        raise DataError(f"{path}: no caption column to check its keys against {data_dir} (a key is a position, "
                        f"not an identity); rerun `python cli.py flag --data {data_dir}`")
    table = pd.read_parquet(path, columns=["key", "caption"])
    return dict(zip(table["key"].astype(str), table["caption"].astype(str)))


def check_scores_fit(scores_path: Path, data_dir, captions: dict) -> None:
    """DataError unless the scores' captions are the data's (`captions`: dataio.keyed.data_captions)."""
    check_captions(scores_path, scored_captions(scores_path, data_dir), captions, data_dir,
                   f"these scores come from another dataset or from the data before it changed: rerun "
                   f"`python cli.py flag --data {data_dir}` or give this data's scores with --scores")


def rank_removals(dataset: Dataset, options: Options, keys: set, captions: dict, fine: frozenset) -> Ranked:
    """The top of the ranking by `options.by` among the data's keys, pairs reviewed fine left out."""
    ranking = RANKINGS[resolve_ranking(options.by)]
    column, high_is_suspect = ranking.column, ranking.high_is_suspect
    scores_path = Path(options.scores) if options.scores else paths.scores_path(dataset.path)
    values = load_scores(scores_path, dataset.path, column)
    unscored = keys - set(values.index)
    if keys and len(unscored) > len(keys) / 2:
        raise DataError(f"{scores_path}: {len(unscored)} of {len(keys)} keys of {dataset.path} have no score "
                        f"(e.g. {min(unscored)}); these scores come from another dataset: "
                        f"run `python cli.py flag --data {dataset.path}` or give the right --scores")
    check_scores_fit(scores_path, dataset.path, captions)
    candidates = values[values.index.isin(keys)]
    # frac is a share of all the data, reviewed pairs included, as without decisions
    amount = options.count if options.frac is None else int(round(options.frac * len(candidates)))
    unreviewed = select_removals(candidates[~candidates.index.isin(fine)], high_is_suspect, amount,
                                 threshold=options.threshold)
    alone = select_removals(candidates, high_is_suspect, amount, threshold=options.threshold)
    return Ranked(unreviewed, frozenset(values.index), frozenset(alone.index) & fine,
                  _describe(options, column, high_is_suspect), column, high_is_suspect, scores_path)


def remove_top_scored(dataset: Dataset, options: Options) -> Step:
    """Drop the most suspect samples by `options.by` (one of count, frac, threshold) and the pairs reviewed
    wrong caption in `options.decisions`; at least one of the two is given."""
    check_amount(options)
    keys = dataset_keys(dataset)
    captions = data_captions(dataset)
    reviewed = load_reviewed(options.decisions, dataset, keys, captions) if options.decisions else None
    fine = reviewed.fine if reviewed else frozenset()
    ranked = rank_removals(dataset, options, keys, captions, fine) if has_amount(options) else None
    step = Step("remove", options=_recipe_options(options, ranked, reviewed))
    step.decide, step.decide_key = _deciders(step, dataset, ranked, reviewed)
    return step


def _recipe_options(options: Options, ranked: Ranked | None, reviewed: Reviewed | None) -> dict:
    recorded = {"by": options.by, "count": options.count, "frac": options.frac, "threshold": options.threshold,
                "decisions": str(reviewed.path) if reviewed else None}
    if ranked is not None:
        recorded.update({"column": ranked.column, "ascending": not ranked.high_is_suspect,
                         "scores": str(ranked.scores_path), "rule": ranked.rule,
                         "cutoff": float(ranked.removals.iloc[-1]) if len(ranked.removals) else None,
                         "spared_reviewed_fine": len(ranked.spared)})
    if reviewed is not None:
        recorded["reviewed"] = reviewed.counts
    return recorded


def _deciders(step: Step, dataset: Dataset, ranked: Ranked | None, reviewed: Reviewed | None) -> tuple:
    """decide(sample) and decide_key(key): the reviewer's *wrong caption* first, then the ranking."""
    wrong = reviewed.wrong if reviewed else frozenset()
    removed = ranked.removals.to_dict() if ranked else {}
    spared = ranked.spared if ranked else frozenset()

    def by_key(key: str):
        if key in wrong:
            count(step, "removed")
            count(step, "removed_reviewed")
            return Remove(REMOVED_REASON)
        if key in removed:
            count(step, "removed")
            return Remove(f"{ranked.rule} ({removed[key]:.4g})")
        if key in spared:
            count(step, "kept_reviewed_fine")
            return Keep(reason=SPARED_REASON)
        return None

    def decide(sample: Sample):
        decision = by_key(sample.key)
        if decision is not None:
            return decision
        if ranked is not None and sample.key not in ranked.scored:
            raise DataError(f"{ranked.scores_path}: no score for key {sample.key} of {dataset.path}; the scores come "
                            f"from another version of the data: rerun `python cli.py flag --data {dataset.path}`")
        return Keep()

    def decide_key(key: str):
        """For samples copied unread (mitigate --no-verify): a key flag did not score may be a sample flag
        could not read, which this writer does not parse; it is kept, and counted and named."""
        decision = by_key(key)
        if decision is not None:
            return decision
        if ranked is not None and key not in ranked.scored:
            count(step, "kept_unscored")
            return Keep(reason="no flag score for this key (flag could not read it, or newer data); copied unread")
        return Keep()

    return decide, decide_key
