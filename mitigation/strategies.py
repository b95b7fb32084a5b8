"""Mitigation strategies by name, and `mitigate()`, which writes a mitigated copy of a dataset.

Each strategy is one function `prepare(dataset, options) -> Step` in its own module, chosen by name
from STRATEGIES (as DataComp's apply_filter chooses filters). Several combine: `remove,text-aug`
drops the flagged samples and augments the captions of the rest. Steps run in the registry's order
(removal first, so no work is spent on samples that go), whatever order the names are given in.

Example:
    >>> import mitigation
    >>> result = mitigation.mitigate("laion_subset", "remove,text-aug", count=100, by="clipmem")  # doctest: +SKIP
    >>> result.path, result.counts                                                              # doctest: +SKIP
    (PosixPath('laion_subset.remove+text-aug'), {'kept': 0, 'changed': 6779, 'removed': 100, 'unreadable': 0})
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from dataio import recipe as recipe_io
from dataio.errors import UsageError
from dataio.export import KEPT_KEYS_NAME, KeptKeys, write_kept_keys_npy
from dataio.paths import mitigated_folder
from dataio.reader import open_dataset
from mitigation.base import Options, Step, build_recipe, combine
from mitigation.expand import EXPANDED_SUFFIX, ExpandResult, expand_captions
from mitigation.multi_caption import gather_captions
from mitigation.parallel import write_on_ranks
from mitigation.remove import remove_top_scored
from mitigation.text_aug import augment_text
from mitigation.training_time import add_text_noise, augment_images
from train.distributed import barrier, init_distributed


@dataclass(frozen=True)
class Strategy:
    name: str
    prepare: Callable[..., Step]
    options: tuple  # the Options fields it reads
    help: str


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("remove", remove_top_scored, ("scores", "by", "count", "frac", "threshold", "decisions"),
                 "drop the top-ranked samples of the flag scores (--count/--frac/--threshold, --by) and the pairs "
                 "reviewed wrong caption (--decisions)"),
        Strategy("multi-caption", gather_captions, ("caption_fields", "min_captions", "seed"),
                 "all captions the data has per image (captions, title, description, keywords, --caption-fields)"),
        Strategy("text-aug", augment_text, ("n_aug", "seed", "paraphrase_model", "paraphrase_n", "paraphrase_prefix"),
                 "the primary caption plus --n-aug EDA variants of it (optionally paraphrases); after multi-caption, "
                 "added to the captions it gathered"),
        Strategy("text-noise", add_text_noise, ("sigma",),
                 "training-time Gaussian noise on text embeddings (--sigma); data unchanged"),
        Strategy("image-aug", augment_images, (),
                 "training-time image augmentation; data unchanged"),
    )
}
# Set by mitigate() itself, not by the user: `prepared_before` tells a step which strategies ran before it.
GENERAL_OPTIONS = {"progress", "prepared_before"}


@dataclass
class MitigationResult:
    path: Path
    counts: dict
    manifest_path: Path
    recipe_path: Path
    recipe: dict
    expanded: Optional[ExpandResult] = None
    kept_keys: Optional[KeptKeys] = None  # kept_keys.npy: the subset file DataComp's resharder takes


def parse_strategies(spec) -> list:
    """Names from "remove,text-aug" (or a list), checked against STRATEGIES, in the order given.

    >>> parse_strategies("remove, text-aug")
    ['remove', 'text-aug']
    """
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise UsageError(f"no strategy given; choose from {', '.join(STRATEGIES)} (comma-separated to combine)")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise UsageError(f"unknown strategy {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    return names


def check_options(names: list, options: Options) -> None:
    """An option no chosen strategy reads is a mistake (`--count` with text-aug): say so."""
    used = set(GENERAL_OPTIONS).union(*(STRATEGIES[n].options for n in names))
    for name in sorted(options.changed_from_default() - used):
        owners = [s.name for s in STRATEGIES.values() if name in s.options]
        flag = "--" + name.replace("_", "-")
        raise UsageError(f"{flag} belongs to {' / '.join(owners)}, which is not among the chosen strategies ({','.join(names)})")


def prepare_steps(dataset, names: list, options: Options) -> list:
    ordered = [name for name in STRATEGIES if name in names]
    return [STRATEGIES[name].prepare(dataset, dataclasses.replace(options, prepared_before=tuple(ordered[:i])))
            for i, name in enumerate(ordered)]


def mitigate(data, strategies, out=None, *, overwrite: bool = False, expand: bool = False, progress: bool = True,
             verify_images: bool = True, command: str = "", **options) -> MitigationResult:
    """Write a mitigated copy of `data` (same format), its manifest and mitigation.json.

    strategies: names from STRATEGIES, a list or comma-separated ("remove,text-aug").
    options: the strategies' own options by name (count=100, by="clipmem", decisions="decisions.csv", n_aug=4,
    sigma=0.15, ...; see Options); one that no chosen strategy reads is a UsageError. With `expand`, also write
    OUT.expanded/: a webdataset with one record per caption. Default OUT: DATA.S1+S2 beside the data.
    verify_images=False: images are not decoded (flag decoded them already); with strategies that decide
    by key alone (`remove`), webdataset samples are then copied unread, as byte ranges (dataio.writer.ByKey).
    """
    names = parse_strategies(strategies)
    world = init_distributed("cpu")  # under torchrun each rank writes its share of the shards (gloo)
    options = options_from(options, progress=progress and world.is_main)
    check_options(names, options)
    dataset = open_dataset(data)
    out = Path(out) if out else mitigated_folder(dataset.path, names)
    expanded_out = out.with_name(out.name + EXPANDED_SUFFIX)
    for folder in [out] + ([expanded_out] if expand else []):
        if folder.exists() and not overwrite:
            raise UsageError(f"{folder}: already exists; remove it or pass --overwrite")
    steps = prepare_steps(dataset, names, options)
    inherited = recipe_io.read_recipe(dataset.path)

    def recipe(counts=None):
        return build_recipe(steps, dataset.path, dataset.format, out, counts, inherited, command)

    result = write_on_ranks(dataset, out, combine(steps), world, steps, overwrite=overwrite,
                            progress=options.progress, verify_images=verify_images,
                            extra_files={recipe_io.RECIPE_NAME: recipe_io.recipe_bytes(recipe())})
    # Counts are known only once the write is done; the recipe (and its training section) was there all along.
    counts = {"input": sum(result.counts.values()), **result.counts}
    final = recipe(counts)
    recipe_path, kept_keys, expanded = out / recipe_io.RECIPE_NAME, None, None
    if world.is_main:
        recipe_path = recipe_io.write_recipe(out, final)
        kept_keys = write_kept_keys_npy(out, out / KEPT_KEYS_NAME)
        if expand:
            expanded = expand_captions(out, expanded_out, overwrite=overwrite, progress=options.progress)
    barrier(world)
    return MitigationResult(out, result.counts, result.manifest_path, recipe_path, final, expanded, kept_keys)


def options_from(values: dict, progress: bool = True) -> Options:
    """Options from strategy options by name; an unknown name is a UsageError listing the known ones."""
    names = {f.name for f in dataclasses.fields(Options)} - GENERAL_OPTIONS
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"unknown strategy option {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return Options(progress=progress, **values)
