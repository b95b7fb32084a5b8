"""CLIPMem: per-sample alignment under each reference model, then f-minus-g differences.

Everything is batched inference over the whole set: image views and caption views are embedded once
per model, and the alignment forms of curate.alignment turn them into one number per sample.

Usage (`models`: (model, tokenizer) pairs that curate.reference_models trained for `plan`):

    per_model = [measure_model(model, tokenizer, table, plan.scored, m.negative_keys)
                 for (model, tokenizer), m in zip(models, plan.models)]
    scores = combine_models(per_model, plan, form="contrastive")
    list(scores.columns)   # ['key', 'group', 'align_f', 'align_g', 'clipmem_raw', 'image_mem', 'text_mem']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from curate import alignment
from curate.protocols import Plan
from train.evaluate import encode_images, encode_texts

DEFAULT_VIEWS = 4
BATCH = 512


@dataclass
class ModelMeasures:
    """One model's numbers for each scored key (in plan.scored order)."""

    contrastive: np.ndarray
    cosine: np.ndarray
    loss: np.ndarray
    image_side: np.ndarray
    text_side: np.ndarray
    # The pair's image (mean of its views) and caption (mean of its captions), normalized: the space the
    # neighbour score searches in.
    image_embedding: torch.Tensor | None = None
    caption_embedding: torch.Tensor | None = None


def embed_image_views(model, images: torch.Tensor, views: int, seed: int, progress: bool = False) -> torch.Tensor:
    """[N, 3, S, S] uint8 -> normalized [N, views, D]; the same seed gives every model the same crops."""
    out = [encode_images(model, images, BATCH, augment=torch.Generator().manual_seed(seed * 1000 + view))
           for view in tqdm(range(views), desc="image views", leave=False, disable=not progress)]
    return torch.stack(out, dim=1)


def embed_texts(model, tokens: torch.Tensor) -> torch.Tensor:
    return encode_texts(model, tokens, BATCH)


def caption_views(table, rows: torch.Tensor, tokenizer):
    """Token rows of every caption of the given samples, and which sample (position in rows) each belongs to."""
    tokens, first = table.tokens(tokenizer)
    index, owner = [], []
    for position, row in enumerate(rows.tolist()):
        span = range(int(first[row]), int(first[row + 1]))
        index.extend(span)
        owner.extend([position] * len(span))
    return tokens[torch.tensor(index, dtype=torch.long)], torch.tensor(owner, dtype=torch.long)


def extra_caption_views(model, tokenizer, rows: torch.Tensor, extra_views: dict | None):
    """Embeddings of caption views used only by the text-side measure (row -> list of strings)."""
    texts = [(position, text) for position, row in enumerate(rows.tolist()) for text in (extra_views or {}).get(row, [])]
    if not texts:
        return None, torch.zeros(0, dtype=torch.long)
    return embed_texts(model, tokenizer([t for _, t in texts])), torch.tensor([p for p, _ in texts], dtype=torch.long)


def measure_model(model, tokenizer, table, scored_keys: list, negative_keys: list, views: int = DEFAULT_VIEWS,
                  seed: int = 0, text_views: dict | None = None, progress: bool = True) -> ModelMeasures:
    """All alignment forms and both per-modality agreements of one model, for every scored key."""
    model.eval()
    rows = table.rows(scored_keys)
    image_views = embed_image_views(model, table.images[rows], views, seed, progress)
    tokens, owner = caption_views(table, rows, tokenizer)
    captions = embed_texts(model, tokens)
    caption_mean = alignment.caption_means(captions, owner, len(rows))

    negative_rows = table.rows(negative_keys)
    negative_tokens, negative_owner = caption_views(table, negative_rows, tokenizer)
    negative_captions = alignment.caption_means(embed_texts(model, negative_tokens), negative_owner, len(negative_rows))
    negative_captions = F.normalize(negative_captions, dim=-1)
    negative_images = embed_image_views(model, table.images[negative_rows], 1, seed + 7919)[:, 0]

    extra, extra_owner = extra_caption_views(model, tokenizer, rows, text_views)
    text_embeddings = captions if extra is None else torch.cat([captions, extra])
    text_owner = torch.cat([owner, extra_owner])
    logit_scale = float(model.logit_scale.detach().exp().clamp(max=100))
    return ModelMeasures(
        contrastive=alignment.contrastive_alignment(image_views, caption_mean, negative_captions).numpy(),
        cosine=alignment.cosine_alignment(image_views, caption_mean).numpy(),
        loss=alignment.loss_alignment(image_views, captions, owner, negative_captions, negative_images,
                                      logit_scale).numpy(),
        image_side=alignment.view_agreement(image_views).numpy(),
        text_side=alignment.caption_agreement(text_embeddings, text_owner, len(rows)).numpy(),
        image_embedding=F.normalize(image_views.mean(dim=1), dim=-1),
        caption_embedding=F.normalize(caption_mean, dim=-1),
    )


def combine_models(per_model: list, plan: Plan, form: str = "contrastive") -> pd.DataFrame:
    """f-minus-g per key: A_f averages the models that trained on the key, A_g those that did not."""
    if form not in alignment.FORMS:
        raise ValueError(f"unknown alignment form {form!r}; choose from {alignment.FORMS}")
    position = {key: i for i, key in enumerate(plan.scored)}
    columns = {}
    for measure in (form, "image_side", "text_side"):
        stacked = np.stack([getattr(m, measure) for m in per_model])  # [models, keys]
        with_f = np.array([stacked[plan.with_model[k], position[k]].mean() for k in plan.scored])
        without_g = np.array([stacked[plan.without_model[k], position[k]].mean() for k in plan.scored])
        columns[measure] = (with_f, without_g)
    align_f, align_g = columns[form]
    return pd.DataFrame({
        "key": plan.scored,
        "group": [str(plan.groups.get(k, "")) for k in plan.scored],
        "align_f": align_f,
        "align_g": align_g,
        "clipmem_raw": align_f - align_g,
        "image_mem": columns["image_side"][0] - columns["image_side"][1],
        "text_mem": columns["text_side"][0] - columns["text_side"][1],
    })


def cumulative_losses(csl_per_model: list, plan: Plan) -> np.ndarray:
    """csl per scored key: its summed per-step training losses (key -> csl per model), averaged over the
    runs that trained on it."""
    values = []
    for key in plan.scored:
        runs = [csl_per_model[j][key] for j in plan.with_model[key] if key in csl_per_model[j]]
        values.append(float(np.mean(runs)) if runs else float("nan"))
    return np.array(values)


def single_caption_views(table, scored_keys: list, seed: int) -> dict:
    """A lightly edited second caption (EDA random deletion) for samples that have only one, so the
    text-side measure has two caption views everywhere."""
    from train.eda import random_deletion

    views = {}
    for key, row in zip(scored_keys, table.rows(scored_keys).tolist()):
        if len(table.captions[row]) == 1:
            views[row] = [random_deletion(table.captions[row][0], p=0.1, seed=seed, key=key)]
    return views
