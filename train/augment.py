"""uint8 image batches -> normalized float model input, with optional augmentation done on tensors.

The augmentation is CLIPMem's image view: random resized crop (area 0.7-1, aspect 3/4-4/3) and horizontal
flip, per sample, drawn from a torch.Generator and applied in one grid_sample call for the whole batch.

Example:
    >>> import torch
    >>> from train.augment import crop_flip_params, to_model_input
    >>> images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    >>> params = crop_flip_params(4, torch.Generator().manual_seed(0))
    >>> mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    >>> to_model_input(images, mean, std, 32, params).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AREA = (0.7, 1.0)
RATIO = (3 / 4, 4 / 3)


def crop_flip_params(count: int, generator: torch.Generator, area=AREA, ratio=RATIO) -> torch.Tensor:
    """Per-sample affine parameters [count, 5]: width, height, center x, center y (in [-1, 1] units), flip sign.

    Drawn for a whole (global) batch at once, so that ranks slicing the same global batch agree.
    """
    u = torch.rand(count, 5, generator=generator)
    scale = area[0] + (area[1] - area[0]) * u[:, 0]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(scale * aspect).clamp(max=1.0)
    height = torch.sqrt(scale / aspect).clamp(max=1.0)
    center_x = (1 - width) * (2 * u[:, 2] - 1)
    center_y = (1 - height) * (2 * u[:, 3] - 1)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    return torch.stack([width, height, center_x, center_y, flip], dim=1)


def to_model_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int,
                   params: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float [B, 3, size, size], normalized; augmented when params are given."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if params is not None:
        x = _crop_flip(x, params.to(x.device), size)
    elif x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean.to(x.device)) / std.to(x.device)


def _crop_flip(x: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    width, height, center_x, center_y, flip = params.unbind(1)
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = center_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = center_y
    grid = F.affine_grid(theta, [len(x), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
