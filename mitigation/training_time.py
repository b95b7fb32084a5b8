"""Training-time strategies: nothing in the data changes, the recipe tells the training loop what to do.

- `text-noise`: Gaussian noise of standard deviation `sigma` added to the normalized text embeddings
  during training (the paper: sigma 0.15 lowers memorization and raises utility; 0.3 reverses both).
- `image-aug`: random image augmentation during training (random resized crop, flip).

Example:
    >>> from mitigation.base import Options
    >>> add_text_noise(None, Options(sigma=0.15)).training
    {'text_noise_sigma': 0.15}
    >>> augment_images(None, Options()).training
    {'image_aug': True}
"""

from __future__ import annotations

import math

from dataio.errors import UsageError
from mitigation.base import Options, Step

# Past this the text embeddings drown (the paper saw 0.3 already hurt); a typo, most likely.
MAX_SIGMA = 1.0


def add_text_noise(dataset, options: Options) -> Step:
    """Record `text_noise_sigma` for training; the data is copied unchanged."""
    sigma = options.sigma
    if not (math.isfinite(sigma) and 0 < sigma <= MAX_SIGMA):
        raise UsageError(f"--sigma must be above 0 and at most {MAX_SIGMA} (the paper's best is 0.15), got {sigma}")
    return Step("text-noise", options={"sigma": sigma}, training={"text_noise_sigma": float(sigma)})


def augment_images(dataset, options: Options) -> Step:
    """Record `image_aug` for training; the data is copied unchanged."""
    return Step("image-aug", options={}, training={"image_aug": True})
