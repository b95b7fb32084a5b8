"""`text-aug`: extra captions per sample from EDA (and optionally a local paraphrasing model).

The augmentations are appended to the sample's json `captions` list; the primary caption (.txt)
stays as it is. Each sample's augmentations depend only on (caption, seed, key), so a rerun writes
the same captions. The recipe asks training to sample one caption per step, otherwise the extra
captions would never be seen.

Example:
    >>> from dataio.reader import Sample
    >>> from mitigation.base import Options
    >>> step = augment_text(None, Options(n_aug=2, seed=0))
    >>> captions = step.decide(Sample("000000001", b"", "jpg", "red fox in the snow", ["red fox in the snow"], {},
    ...                               "00000")).captions
    >>> len(captions), captions[0]
    (3, 'red fox in the snow')
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from dataio.errors import DataError, UsageError
from dataio.reader import Dataset, Sample
from dataio.writer import Keep
from mitigation.base import Options, Step, count
from train.eda import augment_caption


def augment_text(dataset: Dataset, options: Options) -> Step:
    """Append `n_aug` EDA augmentations (and `paraphrase_n` paraphrases if a model is given) per sample."""
    if options.n_aug < 0:
        raise UsageError(f"--n-aug must be 0 or more, got {options.n_aug}")
    if options.n_aug == 0 and not options.paraphrase_model:
        raise UsageError("--n-aug 0 without --paraphrase-model adds nothing; give --n-aug N or a paraphrase model")
    paraphrases = _paraphrase_all(dataset, options) if options.paraphrase_model else {}
    step = Step(
        "text-aug",
        options={"n_aug": options.n_aug, "seed": options.seed, "method": "eda",
                 "paraphrase_model": options.paraphrase_model,
                 "paraphrase_n": options.paraphrase_n if options.paraphrase_model else 0},
        training={"caption_sampling": True},
    )

    def decide(sample: Sample) -> Keep:
        extra = augment_caption(sample.caption, n=options.n_aug, seed=options.seed, key=sample.key)
        extra += paraphrases.get(sample.caption, [])
        new = [c for c in dict.fromkeys(extra) if c not in sample.captions]
        if not new:
            count(step, "samples_without_augmentation")
            return Keep()
        count(step, "captions_added", len(new))
        return Keep(captions=sample.captions + new, reason=f"+{len(new)} augmented captions")

    step.decide = decide
    return step


def _paraphrase_all(dataset: Dataset, options: Options) -> dict:
    """Paraphrases per distinct primary caption: web captions repeat, and the model is the slow part."""
    from mitigation.paraphrase import paraphrase_captions

    if not Path(options.paraphrase_model).is_dir():
        # Checked before the pass over the data that collects the captions, not after it.
        raise DataError(f"paraphrase model folder {options.paraphrase_model} does not exist; give a folder "
                        "written by save_pretrained() (config, weights, tokenizer) of a seq2seq model")
    if options.paraphrase_n < 1:
        raise UsageError(f"--paraphrase-n must be at least 1, got {options.paraphrase_n}")
    records = dataset.records(verify_images=False)
    if options.progress:
        records = tqdm(records, desc="collecting captions", unit=" samples", leave=False)
    captions = list(dict.fromkeys(r.caption for r in records if isinstance(r, Sample)))
    texts = paraphrase_captions(captions, options.paraphrase_model, n=options.paraphrase_n, seed=options.seed,
                                prefix=options.paraphrase_prefix, progress=options.progress)
    return {caption: [t for t in found if t != caption] for caption, found in zip(captions, texts)}
