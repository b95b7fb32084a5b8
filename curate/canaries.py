"""Canaries: known mismatched pairs planted beside the user's pairs, so detection can be graded on data with no truth.

A canary is an extra row: the image of one user pair with a caption that does not belong to it. No user pair is
taken or changed; the canary is trained on exactly like a user pair (it joins the training set of every model
that trains on its image's pair, and is held out by the models that hold that pair out), so every
memorization-based score is defined for it. Its caption comes from a pair of the same fold (or protocol split):
then each model has either seen the image, the caption's pair and the canary together, or none of them, and no
user pair's held-out scores see a canary. Canary rows never leave `flag`: they are graded and dropped.

Kinds, none of which needs a label the user's data may lack:
- random-caption: the caption of another pair drawn from anywhere (a swap);
- text-neighbour: the caption of a pair whose caption is close to this one (TF-IDF over the captions), the hard kind;
- image-neighbour: the caption of a pair whose image is close (pixel thumbnails), the other hard kind;
- generic: alt text nobody wrote ("view larger", "banner", "DSCF0031.JPG").

Example:
    >>> import torch
    >>> from train.data import table_from_tensors
    >>> table = table_from_tensors([f"{i:03d}" for i in range(40)], torch.randint(0, 255, (40, 3, 16, 16),
    ...                            dtype=torch.uint8), [f"a {c} shape number {i}" for i, c in
    ...                            zip(range(40), ["red", "blue"] * 20)])
    >>> spec = plant_canaries(table, {k: i % 2 for i, k in enumerate(table.keys)}, table.keys, 0.2, seed=0)
    >>> spec["kind"].value_counts().sort_index().tolist(), spec["key"].iloc[0]
    ([2, 2, 2, 2], 'canary-000000')
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from curate.lint import normalize
from curate.protocols import Plan
from dataio.errors import UsageError
from train.data import Table, table_from_tensors

CANARY_KINDS = ("random-caption", "text-neighbour", "image-neighbour", "generic")
DEFAULT_FRACTION = 0.02
MAX_FRACTION = 0.2
PREFIX = "canary-"
SPEC_FILE = "canaries.parquet"
# Drawn from among this many nearest pairs, so a hard canary is close without always being the single nearest.
NEAREST = 5
THUMBNAIL = 8
# Kept apart from any list the demo data injects, so a canary never matches the simulated noise by wording.
GENERIC_ALT_TEXTS = (
    "view larger", "banner", "DSCF0031.JPG", "header image", "placeholder", "free download", "wallpaper",
    "see more", "product image", "logo", "p1010023.jpg", "screenshot", "featured image", "pic", "unnamed",
    "default image", "cover", "img", "graphic", "preview",
)


def check_fraction(fraction: float) -> None:
    if not 0 <= fraction <= MAX_FRACTION:
        raise UsageError(f"--canaries {fraction}: choose a fraction between 0 (off) and {MAX_FRACTION}")


def plant_canaries(table: Table, groups: dict, eligible: list, fraction: float, seed: int,
                   kinds: tuple = CANARY_KINDS) -> pd.DataFrame:
    """One row per canary: key, kind, image_key (whose image it shows), caption_key (whose caption it carries;
    empty for generic), caption, group. `groups`: key -> fold or split; `eligible`: keys an image may come from
    (the scored keys)."""
    count = min(int(round(fraction * len(eligible))), len(eligible))
    if count == 0:
        return _empty_spec()
    rng = np.random.default_rng(seed + 15485863)
    row_of = {key: row for row, key in enumerate(table.keys)}
    eligible_rows = np.array([row_of[key] for key in eligible])
    # one id per normalized caption: a donor must carry another caption, and ints compare fast at a million pairs
    caption_ids = pd.factorize(pd.Series([normalize(table.captions[r][0]) for r in eligible_rows]))[0]
    members = _members_by_group(eligible, groups)
    sources = rng.choice(len(eligible), size=count, replace=False)
    kind_of = [kinds[index % len(kinds)] for index in range(count)]
    nearest = {}
    for kind, features_of in (("text-neighbour", _caption_features), ("image-neighbour", _image_features)):
        wanted = [index for index in range(count) if kind_of[index] == kind]
        if wanted:
            nearest.update(zip(wanted, _nearest_donors(features_of(table, eligible_rows), sources[wanted],
                                                        [groups[eligible[s]] for s in sources[wanted]], members,
                                                        caption_ids)))
    rows = []
    for index, (source, kind) in enumerate(zip(sources, kind_of)):
        image_key = eligible[source]
        if kind == "generic":
            caption_key, caption = "", GENERIC_ALT_TEXTS[int(rng.integers(len(GENERIC_ALT_TEXTS)))]
        else:
            if index in nearest:
                candidates = nearest[index]
            else:
                candidates = members[groups[image_key]]
                candidates = candidates[caption_ids[candidates] != caption_ids[source]]
            if not len(candidates):
                continue  # every pair of its group carries this caption: nothing to mismatch it with
            donor = int(candidates[rng.integers(len(candidates))])
            caption_key = eligible[donor]
            caption = table.captions[eligible_rows[donor]][0]
        rows.append({"key": f"{PREFIX}{index:06d}", "kind": kind, "image_key": image_key,
                     "caption_key": caption_key, "caption": caption, "group": str(groups[image_key])})
    spec = pd.DataFrame(rows) if rows else _empty_spec()
    clash = set(spec["key"]) & set(table.keys)
    if clash:
        raise UsageError(f"the data has keys that look like canaries (e.g. {sorted(clash)[0]}); use --canaries 0")
    return spec


def _empty_spec() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in ("key", "kind", "image_key", "caption_key", "caption",
                                                           "group")})


def _members_by_group(keys: list, groups: dict) -> dict:
    """group -> positions in `keys` of its members."""
    members = {}
    for position, key in enumerate(keys):
        members.setdefault(groups[key], []).append(position)
    return {group: np.array(positions) for group, positions in members.items()}


# Similarities computed at once, sources x candidates: about 64 MB of float32.
SIMILARITIES_AT_ONCE = 16_000_000


def _nearest_donors(features, sources: np.ndarray, source_groups: list, members: dict,
                    caption_ids: np.ndarray) -> list:
    """For each source, the NEAREST members of its group by cosine of row-normalized features (dense or sparse),
    most similar first (ties: the earlier member), leaving out those that carry the source's own caption. The
    sources of a group are compared in blocks, one matrix product each: a million pairs would otherwise copy a
    fold's features once per canary."""
    found = [None] * len(sources)
    positions_by_group = {}
    for position, group in enumerate(source_groups):
        positions_by_group.setdefault(group, []).append(position)
    for group, positions in positions_by_group.items():
        candidates = members[group]
        candidate_features, candidate_captions = features[candidates].T, caption_ids[candidates][None, :]
        at_once = max(1, SIMILARITIES_AT_ONCE // len(candidates))
        kth = min(NEAREST, len(candidates)) - 1
        for start in range(0, len(positions), at_once):
            block = np.asarray(positions[start:start + at_once])
            similarity = features[sources[block]] @ candidate_features
            distance = -np.asarray(similarity.toarray() if hasattr(similarity, "toarray") else similarity)
            distance[caption_ids[sources[block]][:, None] == candidate_captions] = np.inf
            cutoff = np.partition(distance, kth, axis=1)[:, kth:kth + 1]
            for row, position in enumerate(block):
                close = np.flatnonzero((distance[row] <= cutoff[row]) & np.isfinite(distance[row]))
                found[position] = candidates[close[np.argsort(distance[row, close], kind="stable")[:NEAREST]]]
    return found


def _caption_features(table: Table, rows: np.ndarray):
    """TF-IDF of the primary captions (words and word pairs), rows L2-normalized: captions that share rare words
    are close. A sparse float32 matrix (dense only when no caption has a word)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [table.captions[r][0] for r in rows]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=4096,
                                 dtype=np.float32)
    try:
        return vectorizer.fit_transform(texts).tocsr()  # dense, 4,096 floats a caption: 16 GB at a million
    except ValueError:  # no word at all in any caption (all empty or punctuation)
        return np.zeros((len(rows), 1), dtype=np.float32)


def _image_features(table: Table, rows: np.ndarray) -> np.ndarray:
    """THUMBNAIL x THUMBNAIL colour thumbnails, centred per dimension: images alike in layout and colour are
    close. The reference models are not trained yet when canaries are planted, so pixels are all there is."""
    parts = []
    for start in range(0, len(rows), 1024):
        block = table.images[torch.as_tensor(rows[start:start + 1024], dtype=torch.long)].float() / 255
        parts.append(F.adaptive_avg_pool2d(block, THUMBNAIL).flatten(1))
    pixels = torch.cat(parts).numpy()
    return _row_normalized(pixels - pixels.mean(axis=0, keepdims=True))


def _row_normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def canary_table(table: Table, spec: pd.DataFrame) -> Table:
    """The canaries as training rows: their image's pixels, their caption alone, no metadata."""
    images = table.images[table.rows(spec["image_key"].tolist())] if len(spec) else table.images[:0]
    return table_from_tensors(spec["key"].tolist(), images, spec["caption"].tolist(), [{} for _ in range(len(spec))])


def with_canaries(plan: Plan, spec: pd.DataFrame) -> Plan:
    """The plan with each canary trained, held out and scored exactly as the pair whose image it shows."""
    if not len(spec):
        return plan
    source = dict(zip(spec["key"], spec["image_key"]))
    models = []
    for model in plan.models:
        trains_on = set(model.train_keys)
        extra = [key for key, image_key in source.items() if image_key in trains_on]
        models.append(type(model)(model.name, model.train_keys + extra, model.negative_keys))
    return Plan(plan.protocol, models, plan.scored + list(source),
                {**plan.with_model, **{key: plan.with_model[image_key] for key, image_key in source.items()}},
                {**plan.without_model, **{key: plan.without_model[image_key] for key, image_key in source.items()}},
                {**plan.groups, **{key: plan.groups[image_key] for key, image_key in source.items()}})


def save_spec(models_folder, spec: pd.DataFrame) -> None:
    """Beside the reference models: `--reuse` rebuilds the same canaries the models trained on."""
    from dataio.atomic import write_parquet

    write_parquet(models_folder / SPEC_FILE, spec)


def load_spec(models_folder, table: Table) -> pd.DataFrame:
    """The canaries a previous run planted, checked against the data: each must still find its image's key and,
    for a borrowed caption, that pair's caption (a key is a position: the data may have changed since)."""
    path = models_folder / SPEC_FILE
    if not path.exists():
        return _empty_spec()
    spec = pd.read_parquet(path)
    row_of = {key: row for row, key in enumerate(table.keys)}
    stale = [key for key, image_key, donor, caption in spec[["key", "image_key", "caption_key", "caption"]].itertuples(
        index=False) if image_key not in row_of or (donor and (donor not in row_of or
                                                             table.captions[row_of[donor]][0] != caption))]
    if stale:
        raise UsageError(f"{path}: {len(stale)} canaries no longer match --data (e.g. {stale[0]}); the data changed "
                         "since the models were trained: run flag without --reuse")
    return spec
