"""Per-sample contrastive losses from the logits of one training forward pass.

The batch loss is the mean of the per-sample losses and equals open_clip's ClipLoss / SigLipLoss on the same
features (tests check it); the per-sample values are the cumulative-sample-loss (csl) signal, for free.
Across processes, features are gathered with open_clip's gather_features (local_loss, gather_with_grad):
each rank scores its own rows against the whole global batch.

Example:
    >>> import torch, torch.nn.functional as F
    >>> from train.losses import per_sample_losses
    >>> u = F.normalize(torch.randn(8, 16), dim=-1)
    >>> per_sample_losses(u, u, torch.tensor(10.0)).shape
    torch.Size([8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import gather_features


def per_sample_losses(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                      logit_bias: torch.Tensor | None = None, kind: str = "clip",
                      rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Symmetric loss of each local sample against the global batch: [local_batch].

    clip: (InfoNCE image->text + InfoNCE text->image) / 2.
    siglip: (sum of sigmoid losses of the sample's image row + of its text column) / 2, so that the batch
    mean equals SigLIP's sum over all pairs divided by the batch size.
    """
    if world_size > 1:
        all_images, all_texts = gather_features(image_features, text_features, local_loss=True,
                                                gather_with_grad=True, rank=rank, world_size=world_size)
    else:
        all_images, all_texts = image_features, text_features
    image_logits = logit_scale * image_features @ all_texts.T
    text_logits = logit_scale * text_features @ all_images.T
    local = len(image_features)
    labels = torch.arange(local, device=image_features.device) + rank * local
    if kind == "clip":
        image_loss = F.cross_entropy(image_logits.float(), labels, reduction="none")
        text_loss = F.cross_entropy(text_logits.float(), labels, reduction="none")
    elif kind == "siglip":
        image_loss = _sigmoid_row_loss(image_logits + logit_bias, labels)
        text_loss = _sigmoid_row_loss(text_logits + logit_bias, labels)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    return (image_loss + text_loss) / 2


def _sigmoid_row_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    signs = -torch.ones_like(logits, dtype=torch.float32)
    signs[torch.arange(len(labels), device=labels.device), labels] = 1.0
    return -F.logsigmoid(signs * logits.float()).sum(1)
