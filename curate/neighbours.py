"""A neighbour score in the spirit of LEMoN (ICML 2025): does a pair agree with the pairs around it?

In the embedding space of a reference model that never trained on the pair (its held-out model), a
mis-captioned pair stands out twice: its caption is far from the captions of the images nearest to its
image, and its image is far from the images of the captions nearest to its caption. Each neighbour's
distance is weighted by how close that neighbour is (exp(-distance / temperature)), so a far neighbour
says little. Neighbours are searched among the pairs that the same model held out (one kfold fold, or the
paper protocol's candidates), by blocked matrix products: memory stays at a block of rows times the pool.

The same held-out pool also corrects the pair's own alignment for hubness (CSLS, Conneau et al., ICLR 2018): a
caption near every image ("logo", a word that suits any drawing) aligns with whatever image it is given, so the
pair's cosine is measured against how close its image and its caption come to the pool's best partners.

Example (two clusters of three pairs; the last pair's caption belongs to the other cluster):
    >>> import torch
    >>> a, b = [[1.0, 0.0], [1.0, 0.1], [1.0, -0.1]], [[0.0, 1.0], [0.1, 1.0], [-0.1, 1.0]]
    >>> images = torch.nn.functional.normalize(torch.tensor(a + b), dim=-1)
    >>> captions = torch.nn.functional.normalize(torch.tensor(a + b[:2] + [[1.0, 0.05]]), dim=-1)
    >>> image_side, text_side = neighbour_distances(images, captions, k=2)
    >>> int(image_side.argmax()), int(text_side.argmax())
    (5, 5)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from curate.protocols import Plan

DEFAULT_K = 5  # LEMoN's k
TEMPERATURE = 0.1
BLOCK_ROWS = 2048


def neighbour_distances(images: torch.Tensor, captions: torch.Tensor, k: int = DEFAULT_K,
                        temperature: float = TEMPERATURE, reference: tuple | None = None) -> tuple:
    """For normalized [N, D] image and caption embeddings of the same N pairs: per pair, the weighted mean
    caption distance to its image neighbours (image side) and image distance to its caption neighbours
    (text side). Higher = the pair disagrees with its neighbourhood.

    Neighbours come from the N pairs themselves and, if given, `reference` = (images, captions) of more
    pairs embedded by the same model (a pair is never its own neighbour).
    """
    pool_images, pool_captions = images, captions
    if reference is not None:
        pool_images, pool_captions = torch.cat([images, reference[0]]), torch.cat([captions, reference[1]])
    return neighbour_distances_in(images, captions, pool_images, pool_captions, torch.arange(images.shape[0]), k,
                                  temperature)


def neighbour_distances_in(images: torch.Tensor, captions: torch.Tensor, pool_images: torch.Tensor,
                           pool_captions: torch.Tensor, excluded: torch.Tensor, k: int = DEFAULT_K,
                           temperature: float = TEMPERATURE) -> tuple:
    """neighbour_distances of query pairs among a pool of other pairs; `excluded[i]` is the pool row (or a row of
    pool rows) query i may not take as a neighbour (itself, or the pairs a canary borrowed its image and its
    caption from), -1 for none."""
    excluded = _as_rows(excluded)
    k = min(k, pool_images.shape[0] - _most_excluded(excluded))
    if k < 1:
        count = images.shape[0]
        return torch.full((count,), float("nan")), torch.full((count,), float("nan"))
    return (_side(images, captions, pool_images, pool_captions, excluded, k, temperature),
            _side(captions, images, pool_captions, pool_images, excluded, k, temperature))


def _side(search: torch.Tensor, compare: torch.Tensor, pool_search: torch.Tensor, pool_compare: torch.Tensor,
          excluded: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Find neighbours in `search` space; measure the pair's distance to them in `compare` space."""
    out = torch.empty(search.shape[0])
    for block, nearest_similarity, nearest in _nearest_by_block(search, pool_search, excluded, k):
        weight = torch.exp(-(1 - nearest_similarity) / temperature)
        distance = 1 - (compare[block][:, None, :] * pool_compare[nearest]).sum(-1)
        out[block] = (weight * distance).sum(1) / weight.sum(1).clamp(min=1e-12)
    return out


def csls_alignment(images: torch.Tensor, captions: torch.Tensor, k: int = DEFAULT_K,
                   reference: tuple | None = None) -> torch.Tensor:
    """Hubness-corrected alignment of N normalized pairs: 2 cos(image, caption) - r_image - r_caption, with
    r_image the mean cosine of the image to its k nearest captions among the other pairs (and `reference`'s),
    r_caption the caption's to its k nearest images. Lower = the pair fits each other worse than each fits others.

    Example: the first caption also suits the other images (a hub), the second only its own, less closely;
    the raw cosine ranks the second pair lower, the corrected alignment the first.
    >>> import torch
    >>> images = torch.eye(4, 5)
    >>> captions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.5, 0.5, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0],
    ...                                                        [0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]]), dim=-1)
    >>> [round(v, 2) for v in (images * captions).sum(-1).tolist()]
    [0.76, 0.71, 1.0, 1.0]
    >>> [round(v, 2) for v in csls_alignment(images, captions, k=2).tolist()]
    [1.13, 1.23, 1.81, 1.81]
    """
    pool_images, pool_captions = images, captions
    if reference is not None:
        pool_images, pool_captions = torch.cat([images, reference[0]]), torch.cat([captions, reference[1]])
    return csls_alignment_in(images, captions, pool_images, pool_captions, torch.arange(images.shape[0]), k)


def csls_alignment_in(images: torch.Tensor, captions: torch.Tensor, pool_images: torch.Tensor,
                      pool_captions: torch.Tensor, excluded: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """csls_alignment of query pairs against a pool of other pairs; `excluded[i]`: the pool row (or a row of pool
    rows) query i may not take (itself, or the pairs a canary borrowed its image and its caption from), -1 for
    none."""
    excluded = _as_rows(excluded)
    k = min(k, pool_images.shape[0] - _most_excluded(excluded))
    if k < 1:
        return torch.full((images.shape[0],), float("nan"))
    own = (images * captions).sum(-1)
    return 2 * own - _nearest_mean(images, pool_captions, excluded, k) - _nearest_mean(captions, pool_images, excluded, k)


def _nearest_mean(queries: torch.Tensor, pool: torch.Tensor, excluded: torch.Tensor, k: int) -> torch.Tensor:
    """Mean cosine of each query to its k nearest pool rows of the other modality."""
    out = torch.empty(queries.shape[0])
    for block, nearest_similarity, _ in _nearest_by_block(queries, pool, excluded, k):
        out[block] = nearest_similarity.mean(1)
    return out


def _as_rows(excluded: torch.Tensor) -> torch.Tensor:
    """Excluded pool rows as one row per query (a single column when each query excludes at most one)."""
    excluded = torch.as_tensor(excluded, dtype=torch.long)
    return excluded[:, None] if excluded.dim() == 1 else excluded


def _most_excluded(excluded: torch.Tensor) -> int:
    """The most pool rows any one query may not take: a pool that small leaves it fewer than k neighbours."""
    return int((excluded >= 0).sum(1).max()) if excluded.numel() else 0


def _nearest_by_block(queries: torch.Tensor, pool: torch.Tensor, excluded: torch.Tensor, k: int):
    """Per block of BLOCK_ROWS queries: (its slice, the cosines of each query's k nearest pool rows, their rows),
    a query's excluded pool rows never among them. Memory stays at a block times the pool."""
    for start in range(0, queries.shape[0], BLOCK_ROWS):
        block = slice(start, start + BLOCK_ROWS)
        similarity = queries[block] @ pool.T
        banned = excluded[block]
        rows = torch.arange(similarity.shape[0])[:, None].expand_as(banned)
        similarity[rows[banned >= 0], banned[banned >= 0]] = -float("inf")
        nearest_similarity, nearest = similarity.topk(k, dim=1)
        yield block, nearest_similarity, nearest


def held_out_rows(plan: Plan, index: int) -> torch.Tensor:
    """Positions in plan.scored of the pairs model `index` held out (a key held out by several: the first)."""
    return torch.tensor([i for i, key in enumerate(plan.scored) if plan.without_model[key][0] == index],
                        dtype=torch.long)


def held_out_neighbour_scores(per_model: list, plan: Plan, k: int = DEFAULT_K,
                              canary_lenders: dict | None = None) -> pd.DataFrame:
    """nbr_image, nbr_text, their sum `neighbour` and the hubness-corrected alignment `align_csls` per scored key,
    each pair measured by its held-out model among the other pairs that model held out.
    per_model: curate.memorization.ModelMeasures.

    canary_lenders (canary key -> the keys whose image and whose caption it shows; an empty key for none):
    canaries are measured among the user's pairs only, never beside the pairs that lent them their image or
    their caption, and are never anyone's neighbour. A real mismatched pair has no twin in the data that holds
    its image with the right caption, nor one that holds its caption with the image it describes; left in, the
    caption's lender is the nearest caption to a canary's caption (the same text) and its image gives the
    mismatch away, which no real mismatch offers.
    """
    canary_lenders = canary_lenders or {}
    image_side = np.full(len(plan.scored), np.nan)
    text_side = np.full(len(plan.scored), np.nan)
    csls = np.full(len(plan.scored), np.nan)
    for index, measures in enumerate(per_model):
        rows = held_out_rows(plan, index)
        if not len(rows):
            continue
        is_canary = torch.tensor([plan.scored[r] in canary_lenders for r in rows.tolist()], dtype=torch.bool)
        users, canaries = rows[~is_canary], rows[is_canary]
        images, captions = measures.image_embedding, measures.caption_embedding
        if len(users):
            distances = neighbour_distances(images[users], captions[users], k)
            image_side[users.numpy()], text_side[users.numpy()] = distances[0].numpy(), distances[1].numpy()
            csls[users.numpy()] = csls_alignment(images[users], captions[users], k).numpy()
        if len(canaries) and len(users):
            position = {plan.scored[r]: i for i, r in enumerate(users.tolist())}
            excluded = torch.tensor([[position.get(lender, -1) for lender in canary_lenders[plan.scored[r]]]
                                     for r in canaries.tolist()], dtype=torch.long)
            distances = neighbour_distances_in(images[canaries], captions[canaries], images[users], captions[users],
                                               excluded, k)
            image_side[canaries.numpy()], text_side[canaries.numpy()] = distances[0].numpy(), distances[1].numpy()
            csls[canaries.numpy()] = csls_alignment_in(images[canaries], captions[canaries], images[users],
                                                       captions[users], excluded, k).numpy()
    return pd.DataFrame({"key": plan.scored, "nbr_image": image_side, "nbr_text": text_side,
                         "neighbour": image_side + text_side, "align_csls": csls})
