"""Optional caption paraphrasing with a local transformers seq2seq model (T5, BART, Pegasus...).

The model is read from a folder written by ``save_pretrained`` (config, weights, tokenizer);
nothing is downloaded. Paraphrases are sampled (nucleus sampling), so they vary with the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from dataio.errors import DataError, UsageError

_HOW_TO = (
    "give a local folder written by save_pretrained() with config.json, the weights and the "
    "tokenizer of a seq2seq model (e.g. a T5 paraphraser)"
)


def load_paraphraser(model_dir: str | Path):
    """Tokenizer and model from ``model_dir``, offline; DataError when it is not such a folder.

    >>> load_paraphraser("/no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dataio.errors.DataError: paraphrase model folder /no/such/folder does not exist; give ...
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"paraphrase model folder {model_dir} does not exist; {_HOW_TO}")
    if not (model_dir / "config.json").is_file():
        raise DataError(f"{model_dir} has no config.json, so it is not a model folder; {_HOW_TO}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot load a seq2seq model from {model_dir} ({reason}); {_HOW_TO}")
    return tokenizer, model.eval()


def _clean(text: str) -> str:
    return " ".join(text.split())


def paraphrase_captions(
    captions: Sequence[str],
    model_dir: str | Path,
    n: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    prefix: str = "",
    max_new_tokens: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> list[list[str]]:
    """``n`` sampled paraphrases per caption from the local model in ``model_dir``.

    Each caption gets exactly ``n`` strings, never empty: a blank generation is replaced by the
    caption itself. ``prefix`` is put before every caption (T5 paraphrasers usually want
    "paraphrase: "). Batch b is sampled with seed ``seed + b``, so the same captions, seed and
    batch_size give the same paraphrases; the global torch RNG is left as it was.
    ``device`` defaults to CUDA when available.

    Example, given a paraphraser saved in /models/t5-paraphraser::

        paraphrase_captions(["a red dog"], "/models/t5-paraphraser", n=2, prefix="paraphrase: ")
        # [['a dog in red', 'a red hound']]
    """
    if n < 1 or batch_size < 1:
        raise UsageError(f"n and batch_size must be at least 1, got n={n}, batch_size={batch_size}")
    tokenizer, model = load_paraphraser(model_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    starts = range(0, len(captions), batch_size)
    if progress:
        starts = tqdm(starts, desc="paraphrasing", unit="batch")
    paraphrases: list[list[str]] = []
    for batch_index, start in enumerate(starts):
        batch = list(captions[start : start + batch_size])
        prompts = [prefix + caption for caption in batch]
        texts = _generate(tokenizer, model, prompts, n, seed + batch_index, max_new_tokens, device)
        for i, caption in enumerate(batch):
            paraphrases.append([_clean(t) or caption for t in texts[i * n : (i + 1) * n]])
    return paraphrases


def _generate(tokenizer, model, texts, n, seed, max_new_tokens, device) -> list[str]:
    """n sampled outputs per input, grouped by input, as generate() returns them."""
    inputs = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=256)
    inputs = {name: tensor.to(device) for name, tensor in inputs.items()}
    cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
        torch.manual_seed(seed)
        output = model.generate(
            **inputs,
            do_sample=True,
            top_p=0.95,
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
        )
    return tokenizer.batch_decode(output, skip_special_tokens=True)
