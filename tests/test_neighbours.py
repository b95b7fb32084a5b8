"""The hubness-corrected alignment (curate.neighbours.csls_alignment): the formula, blocked, with exclusions."""

import numpy as np
import pandas as pd
import pytest
import torch

from curate import neighbours


def brute_force_csls(images, captions, pool_images, pool_captions, excluded, k):
    """2 cos - mean of the k highest image->pool-caption cosines - mean of the k highest caption->pool-image ones,
    the excluded pool rows left out, one query at a time."""
    out = []
    for i in range(images.shape[0]):
        keep = torch.ones(pool_images.shape[0], dtype=torch.bool)
        for row in torch.atleast_1d(excluded[i]).tolist():
            if row >= 0:
                keep[row] = False
        r_image = (pool_captions[keep] @ images[i]).topk(k).values.mean()
        r_caption = (pool_images[keep] @ captions[i]).topk(k).values.mean()
        out.append(2 * images[i] @ captions[i] - r_image - r_caption)
    return torch.stack(out)


@pytest.fixture
def embeddings():
    generator = torch.Generator().manual_seed(0)
    unit = lambda rows: torch.nn.functional.normalize(torch.randn(rows, 16, generator=generator), dim=-1)  # noqa: E731
    return unit(37), unit(37), unit(50), unit(50)


def test_blocked_csls_equals_the_formula_with_each_querys_own_row_excluded(embeddings, monkeypatch):
    images, captions, _, _ = embeddings
    monkeypatch.setattr(neighbours, "BLOCK_ROWS", 8)  # several blocks, the last one short
    expected = brute_force_csls(images, captions, images, captions, torch.arange(37), k=5)
    assert torch.allclose(neighbours.csls_alignment(images, captions, k=5), expected, atol=1e-5)


def test_a_canary_is_measured_without_the_pair_that_lent_its_image(embeddings):
    _, captions, pool_images, pool_captions = embeddings
    # each query shows the image of a pool pair whose own caption fits that image exactly
    lenders = torch.arange(0, 37)
    pool_captions = pool_captions.clone()
    pool_captions[lenders] = pool_images[lenders]
    images = pool_images[lenders]
    excluded = torch.where(lenders % 2 == 0, lenders, torch.tensor(-1))
    got = neighbours.csls_alignment_in(images, captions, pool_images, pool_captions, excluded, k=3)
    assert torch.allclose(got, brute_force_csls(images, captions, pool_images, pool_captions, excluded, k=3),
                          atol=1e-5)
    # left in, the lender's caption would be every such image's nearest caption and lower its score
    kept = neighbours.csls_alignment_in(images, captions, pool_images, pool_captions, torch.full((37,), -1), k=3)
    assert (kept[excluded >= 0] < got[excluded >= 0] - 1e-3).all()
    assert torch.allclose(got[excluded < 0], kept[excluded < 0])


def test_a_canary_is_measured_without_the_pair_that_lent_its_caption(embeddings):
    images, _, pool_images, pool_captions = embeddings
    # each query carries the caption of a pool pair whose image fits that caption exactly, and shows the image
    # of another pool pair: both lenders are left out, as no real mismatched pair has either twin in the data
    caption_lenders, image_lenders = torch.arange(0, 37), torch.arange(13, 50)
    pool_images = pool_images.clone()
    pool_images[caption_lenders] = pool_captions[caption_lenders]
    captions, images = pool_captions[caption_lenders], pool_images[image_lenders]
    both = torch.stack([image_lenders, caption_lenders], dim=1)
    got = neighbours.csls_alignment_in(images, captions, pool_images, pool_captions, both, k=3)
    assert torch.allclose(got, brute_force_csls(images, captions, pool_images, pool_captions, both, k=3), atol=1e-5)
    image_only = torch.stack([image_lenders, torch.full((37,), -1)], dim=1)
    kept = neighbours.csls_alignment_in(images, captions, pool_images, pool_captions, image_only, k=3)
    assert (kept < got - 1e-3).all()
    # the text side of the neighbour score: left in, the lender is the caption's nearest caption (the same
    # text) and its image, not the one shown, is what the canary is measured against
    text_side = neighbours.neighbour_distances_in(images, captions, pool_images, pool_captions, both, k=3)[1]
    assert torch.allclose(text_side, brute_force_text_side(images, captions, pool_images, pool_captions, both, k=3),
                          atol=1e-5)
    text_side_kept = neighbours.neighbour_distances_in(images, captions, pool_images, pool_captions, image_only, k=3)[1]
    assert (text_side - text_side_kept).abs().min() > 1e-3


def brute_force_text_side(images, captions, pool_images, pool_captions, excluded, k):
    """The caption's k nearest pool captions, the excluded rows left out; the weighted image distance to their
    images."""
    out = []
    for i in range(images.shape[0]):
        keep = torch.ones(pool_images.shape[0], dtype=torch.bool)
        keep[[row for row in excluded[i].tolist() if row >= 0]] = False
        similarity, nearest = (pool_captions[keep] @ captions[i]).topk(k)
        weight = torch.exp(-(1 - similarity) / neighbours.TEMPERATURE)
        distance = 1 - pool_images[keep][nearest] @ images[i]
        out.append((weight * distance).sum() / weight.sum())
    return torch.stack(out)


def test_too_small_a_pool_gives_missing_not_a_number_from_nothing():
    images = torch.nn.functional.normalize(torch.ones(1, 4), dim=-1)
    assert torch.isnan(neighbours.csls_alignment(images, images, k=5)).all()


def test_held_out_scores_measure_each_canary_without_both_of_its_lenders():
    from curate.canaries import with_canaries
    from curate.memorization import ModelMeasures
    from curate.protocols import kfold_plan

    keys = [f"{i:03d}" for i in range(60)]
    plan = kfold_plan(keys, folds=2, seed=0)
    members = {fold: [key for key in keys if plan.groups[key] == fold] for fold in (0, 1)}
    # each canary shows one pair's image with the caption of another pair of the same fold
    lenders = {f"canary-{fold}{n}": (members[fold][n], members[fold][n + 10]) for fold in (0, 1) for n in range(3)}
    spec = pd.DataFrame([{"key": key, "image_key": image_key, "caption_key": caption_key}
                         for key, (image_key, caption_key) in lenders.items()])
    plan = with_canaries(plan, spec)
    generator = torch.Generator().manual_seed(1)
    unit = lambda rows: torch.nn.functional.normalize(torch.randn(rows, 8, generator=generator), dim=-1)  # noqa: E731
    row_of = {key: row for row, key in enumerate(plan.scored)}
    images, captions = unit(len(plan.scored)), unit(len(plan.scored))
    for key, (image_key, caption_key) in lenders.items():
        images[row_of[key]], captions[row_of[key]] = images[row_of[image_key]], captions[row_of[caption_key]]
    zeros = np.zeros(len(plan.scored))
    measures = ModelMeasures(zeros, zeros, zeros, zeros, zeros, images, captions)
    got = neighbours.held_out_neighbour_scores([measures, measures], plan, k=3, canary_lenders=lenders)
    for key, pair_lenders in lenders.items():
        held_out = [k for k in plan.scored if plan.without_model[k][0] == plan.without_model[key][0]
                    and k not in lenders]
        pool = torch.tensor([row_of[k] for k in held_out])
        excluded = torch.tensor([[held_out.index(lender) for lender in pair_lenders]])
        query = torch.tensor([row_of[key]])
        image_side, text_side = neighbours.neighbour_distances_in(images[query], captions[query], images[pool],
                                                                  captions[pool], excluded, k=3)
        row = got.set_index("key").loc[key]
        assert row["nbr_image"] == pytest.approx(float(image_side[0]), abs=1e-5)
        assert row["nbr_text"] == pytest.approx(float(text_side[0]), abs=1e-5)
        # with its caption's lender in the pool, that lender would be the nearest caption (the same one)
        nearest_caption = (captions[pool] @ captions[row_of[key]]).argmax()
        assert held_out[int(nearest_caption)] == pair_lenders[1]
