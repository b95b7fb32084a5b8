"""`text-aug`: the primary caption plus EDA variants of it (and optionally paraphrases from a local model).

Alone, text-aug trains on the primary caption (.txt, unchanged) and its augmentations: the sample's json
`captions` list becomes [primary] + variants, and whatever other captions the data had are dropped, so
the strategy measures caption augmentation and nothing else (the data's own alternate captions are the
`multi-caption` strategy). After multi-caption (`multi-caption,text-aug`, in one run or on a folder
multi-caption wrote) the variants are appended to the gathered captions instead. Each sample's
augmentations depend only on (caption, seed, key), so a rerun writes the same captions. The recipe asks
training to sample one caption per step, otherwise the extra captions would never be seen.

Example:
    >>> from dataio.reader import Sample
    >>> from mitigation.base import Options
    >>> step = augment_text(None, Options(n_aug=2, seed=0))
    >>> sample = Sample("000000001", b"", "jpg", "red fox in the snow", ["red fox in the snow", "a fox"], {}, "00000")
    >>> captions = step.decide(sample).captions
    >>> len(captions), captions[0], "a fox" in captions
    (3, 'red fox in the snow', False)
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from dataio.errors import DataError, UsageError
from dataio.reader import Dataset, Sample
from dataio.writer import Keep
from mitigation.base import Options, Step, count
from mitigation.multi_caption import captions_were_gathered
from train.eda import augment_caption


def augment_text(dataset: Dataset, options: Options) -> Step:
    """[primary] + `n_aug` EDA augmentations (+ `paraphrase_n` paraphrases if a model is given) per sample;
    appended to the gathered captions instead when multi-caption ran first."""
    if options.n_aug < 0:
        raise UsageError(f"--n-aug must be 0 or more, got {options.n_aug}")
    if options.n_aug == 0 and not options.paraphrase_model:
        raise UsageError("--n-aug 0 without --paraphrase-model adds nothing; give --n-aug N or a paraphrase model")
    paraphrases = _paraphrase_all(dataset, options) if options.paraphrase_model else {}
    after_multi_caption = captions_were_gathered(dataset, options)
    step = Step(
        "text-aug",
        options={"n_aug": options.n_aug, "seed": options.seed, "method": "eda",
                 "paraphrase_model": options.paraphrase_model,
                 "paraphrase_n": options.paraphrase_n if options.paraphrase_model else 0,
                 "added_to": "gathered captions" if after_multi_caption else "primary caption only"},
        training={"caption_sampling": True},
    )

    def decide(sample: Sample) -> Keep:
        kept = list(sample.captions) if after_multi_caption else [sample.caption]
        extra = augment_caption(sample.caption, n=options.n_aug, seed=options.seed, key=sample.key)
        extra += paraphrases.get(sample.caption, [])
        new = [c for c in dict.fromkeys(extra) if c not in kept]
        dropped = len(sample.captions) - len(kept)
        count(step, "captions_added", len(new))
        count(step, "captions_dropped", dropped)
        if not new:
            count(step, "samples_without_augmentation")
        if not new and not dropped:
            return Keep()
        reason = f"+{len(new)} augmented captions" + (f", {dropped} other captions dropped" if dropped else "")
        return Keep(captions=kept + new, reason=reason)

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
