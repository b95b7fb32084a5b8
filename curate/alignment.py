"""Alignment of image-caption pairs under one model, from embeddings already computed (no model here).

For normalized embeddings the mean cosine over all (image view, caption view) combinations equals the
dot product of the two view means, so every form below is a few matrix products over the whole set.

Example:
    >>> import torch
    >>> from curate.alignment import contrastive_alignment
    >>> views = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)      # 3 samples, 4 views
    >>> captions = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    >>> negatives = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    >>> contrastive_alignment(views, captions, negatives).shape
    torch.Size([3])
"""

from __future__ import annotations

import torch

FORMS = ("contrastive", "cosine", "loss")


def cosine_alignment(image_views: torch.Tensor, caption_mean: torch.Tensor) -> torch.Tensor:
    """Mean cos(u(I'), v(T')) over views: image_views [N, A, D], caption_mean = mean caption view [N, D]."""
    return (image_views.mean(dim=1) * caption_mean).sum(dim=-1)


def contrastive_alignment(image_views: torch.Tensor, caption_mean: torch.Tensor,
                          negative_captions: torch.Tensor) -> torch.Tensor:
    """Cosine alignment minus the same image views' mean cosine to captions no model trained on."""
    image_mean = image_views.mean(dim=1)
    negative_mean = negative_captions.mean(dim=0)
    return (image_mean * (caption_mean - negative_mean)).sum(dim=-1)


def loss_alignment(image_views: torch.Tensor, caption_views: torch.Tensor, caption_owner: torch.Tensor,
                   negative_captions: torch.Tensor, negative_images: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Minus the pair's symmetric InfoNCE loss against the negative set (higher = better aligned).

    caption_views [M, D] belong to samples caption_owner [M]; each (image view, caption view) pair is scored
    image-to-text against the negative captions and text-to-image against the negative images.
    """
    views = image_views[caption_owner]                                    # [M, A, D]
    positive = (views * caption_views[:, None, :]).sum(-1) * logit_scale  # [M, A]
    image_to_text = views @ negative_captions.T * logit_scale              # [M, A, E]
    text_to_image = (caption_views @ negative_images.T * logit_scale)[:, None, :].expand_as(image_to_text)
    loss_i = torch.logsumexp(torch.cat([positive[..., None], image_to_text], -1), -1) - positive
    loss_t = torch.logsumexp(torch.cat([positive[..., None], text_to_image], -1), -1) - positive
    per_caption = -(loss_i + loss_t).mean(dim=1) / 2                     # [M]
    return caption_means(per_caption, caption_owner, image_views.shape[0])


def view_agreement(views: torch.Tensor) -> torch.Tensor:
    """Mean cosine between distinct views of one sample: [N, A, D] -> [N] (per-modality memorization)."""
    count = views.shape[1]
    if count < 2:
        return torch.full((views.shape[0],), float("nan"))
    total = views.sum(dim=1)
    return ((total * total).sum(-1) - count) / (count * (count - 1))


def caption_agreement(caption_views: torch.Tensor, caption_owner: torch.Tensor, n_samples: int) -> torch.Tensor:
    """view_agreement for caption views whose count differs per sample (NaN where a sample has one)."""
    sums, counts = _sum_by_owner(caption_views, caption_owner, n_samples)
    agreement = ((sums * sums).sum(-1) - counts) / (counts * (counts - 1))
    return torch.where(counts > 1, agreement, torch.full_like(agreement, float("nan")))


def caption_means(caption_views: torch.Tensor, caption_owner: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Mean of each sample's rows ([M, D] or [M]) -> [N, D] or [N]; a sample with no rows gets zeros."""
    sums, counts = _sum_by_owner(caption_views, caption_owner, n_samples)
    counts = counts.clamp(min=1)
    return sums / (counts[:, None] if sums.dim() > 1 else counts)


def _sum_by_owner(values: torch.Tensor, owner: torch.Tensor, n_samples: int) -> tuple:
    sums = torch.zeros((n_samples,) + tuple(values.shape[1:])).index_add_(0, owner, values)
    return sums, torch.bincount(owner, minlength=n_samples).float()
