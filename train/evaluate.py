"""Utility of a CLIP model on held-out samples: retrieval, zero-shot and linear-probe accuracy.

Metric keys returned by evaluate():
    i2t_r1/5/10, t2i_r1/5/10                 exact-index recall (the sample's own caption / image)
    i2t_r1/5/10_caption, t2i_r1/5/10_caption  a retrieved caption identical to the true one counts as a hit
    retrieval_chance_r1/5/10                 k / n
    zeroshot_label_acc                       prompts from the label strings
    zeroshot_words_acc                       prompts from words the captions of each label use
    majority_rate, zeroshot_chance           the most common label's share; 1 / classes
    linear_probe_acc                         logistic regression on frozen image features, 2-fold by key hash
    n_samples, n_labeled, n_classes, class_prompts

Usage (a trained model, its tokenizer, and a train.data Table holding the held-out keys):

    metrics = evaluate(model, tokenizer, table, heldout_keys)
    metrics["i2t_r1_caption"], metrics["linear_probe_acc"]   # (0.331, 0.572) for clipmem-tiny on laion_subset
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from train.augment import crop_flip_params, to_model_input
from train.data import Table, tokenize_batched, unit_hash
from train.models import image_mean_std, image_size_of
from train.prompts import DEFAULT_TEMPLATES, caption_word_names, label_names

RECALL_KS = (1, 5, 10)


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def encode_images(model, images_uint8: torch.Tensor, batch_size: int = 256, augment=None) -> torch.Tensor:
    """L2-normalized image embeddings [N, D] (float32, CPU), eval mode, no gradient.

    augment: None, a torch.Generator (draws one random crop + flip per image) or crop/flip parameters
    [N, 5] from train.augment.crop_flip_params.
    """
    if len(images_uint8) == 0:
        raise ValueError("no images to encode")
    mean, std = image_mean_std(model)
    size = image_size_of(model)
    if isinstance(augment, torch.Generator):
        augment = crop_flip_params(len(images_uint8), augment)
    chunks = []
    with _eval_mode(model):
        for start in range(0, len(images_uint8), batch_size):
            params = augment[start:start + batch_size] if augment is not None else None
            batch = to_model_input(images_uint8[start:start + batch_size], mean, std, size, params, _device(model))
            chunks.append(F.normalize(model.encode_image(batch).float(), dim=-1).cpu())
    return torch.cat(chunks)


def encode_texts(model, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """L2-normalized text embeddings [N, D] (float32, CPU) of tokenized captions, eval mode, no gradient."""
    chunks = []
    with _eval_mode(model):
        for start in range(0, len(tokens), batch_size):
            batch = tokens[start:start + batch_size].to(_device(model))
            chunks.append(F.normalize(model.encode_text(batch).float(), dim=-1).cpu())
    return torch.cat(chunks)


def match_ranks(queries: torch.Tensor, gallery: torch.Tensor, query_ids: torch.Tensor, gallery_ids: torch.Tensor,
                block: int = 1024) -> torch.Tensor:
    """For each query, how many non-matching gallery items score at least as high as its best match
    (a match: equal id). Rank 0 = retrieved first; ties against non-matches count as misses."""
    ranks = []
    for start in range(0, len(queries), block):
        scores = queries[start:start + block] @ gallery.T
        matches = query_ids[start:start + block, None] == gallery_ids[None, :]
        best = scores.masked_fill(~matches, float("-inf")).max(1).values
        ranks.append(((scores >= best[:, None]) & ~matches).sum(1))
    return torch.cat(ranks)


def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor, captions: list,
                      ks=RECALL_KS) -> dict:
    """Recall@k both ways: exact index, and caption identity (an identical caption counts as a hit)."""
    n = len(captions)
    index_ids = torch.arange(n)
    caption_index = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    caption_ids = torch.tensor([caption_index[c] for c in captions])
    ranks = {
        "i2t": match_ranks(image_features, text_features, index_ids, index_ids),
        "t2i": match_ranks(text_features, image_features, index_ids, index_ids),
        "i2t_caption": match_ranks(image_features, text_features, caption_ids, caption_ids),
        "t2i_caption": match_ranks(text_features, image_features, caption_ids, caption_ids),
    }
    metrics = {}
    for k in ks:
        for name, rank in ranks.items():
            direction, _, variant = name.partition("_")
            metrics[f"{direction}_r{k}" + (f"_{variant}" if variant else "")] = float((rank < k).double().mean())
        metrics[f"retrieval_chance_r{k}"] = min(1.0, k / n)
    return metrics


def class_embeddings(model, tokenizer, names: dict, templates=DEFAULT_TEMPLATES) -> torch.Tensor:
    """One normalized embedding per class: the mean over its names x templates (prompt ensembling)."""
    rows = []
    for class_names in names.values():
        prompts = [t.format(name) for name in class_names for t in templates]
        rows.append(encode_texts(model, tokenizer(prompts)).mean(0))
    return F.normalize(torch.stack(rows), dim=-1)


def zero_shot_accuracy(image_features: torch.Tensor, labels: list, class_features: torch.Tensor,
                       classes: list) -> float:
    predicted = (image_features @ class_features.T).argmax(1).tolist()
    return float(np.mean([classes[p] == label for p, label in zip(predicted, labels)]))


def linear_probe_accuracy(features: torch.Tensor, labels: list, keys: list, seed: int = 0,
                          folds: int = 2) -> float | None:
    """Logistic regression on frozen features, cross-validated over `folds` folds by a stable hash of the key;
    None if a training side lacks 2 classes. A key's fold depends only on (key, seed, folds), so every model
    evaluated on the same keys is probed on the same folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if folds < 2:
        raise ValueError(f"a cross-validated probe needs at least 2 folds, got {folds}")
    fold = _hash_folds(keys, folds, seed + 7919)
    x, y = features.numpy(), np.array([str(label) for label in labels], dtype=object)
    correct, total = 0, 0
    for held in range(folds):
        test_mask = fold == held
        train_mask = ~test_mask
        if not test_mask.any():
            continue
        if len(set(y[train_mask])) < 2:
            return None
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        probe.fit(x[train_mask], y[train_mask])
        correct += int((probe.predict(x[test_mask]) == y[test_mask]).sum())
        total += int(test_mask.sum())
    return correct / total if total else None


def _hash_folds(keys: list, folds: int, seed: int) -> np.ndarray:
    """Fold number per key: the key's stable hash (train.data.split_heldout's) cut into `folds` equal ranges.

    >>> fold = _hash_folds([f"k{i}" for i in range(1000)], 5, seed=0)
    >>> sorted(set(fold.tolist())), bool(abs((fold == 0).mean() - 0.2) < 0.05)
    ([0, 1, 2, 3, 4], True)
    """
    hashes = np.array([unit_hash(f"{seed}:{key}") for key in keys])
    # Compared with j/folds as split_heldout compares with frac: the folds match split_heldout's sides.
    bounds = np.arange(1, folds) / folds
    return (hashes[:, None] >= bounds[None, :]).sum(axis=1)


def evaluate(model, tokenizer, table: Table, keys: list, label_field: str = "category",
             templates=DEFAULT_TEMPLATES, name_keys: list | None = None, batch_size: int = 256) -> dict:
    """All utility metrics of `model` on `keys` of `table` (see the module docstring for the keys).

    Caption-word class names come from the captions of `name_keys` (default: the table's other keys, i.e. the
    training side, so held-out captions do not pick their own prompts; the evaluated keys if there are none).
    """
    rows = table.rows(keys)
    captions = [table.captions[r][0] for r in rows.tolist()]
    image_features = encode_images(model, table.images[rows], batch_size=batch_size)
    text_features = encode_texts(model, tokenize_batched(tokenizer, captions))
    metrics = {"n_samples": len(keys), **retrieval_metrics(image_features, text_features, captions)}

    labels = [table.meta[r].get(label_field) for r in rows.tolist()]
    labeled = [i for i, label in enumerate(labels) if label is not None and str(label) != ""]
    metrics["n_labeled"] = len(labeled)
    if len(labeled) < 2:
        return metrics
    labels = [labels[i] for i in labeled]
    features = image_features[labeled]
    counts = Counter(labels)
    metrics["n_classes"] = len(counts)
    metrics["majority_rate"] = counts.most_common(1)[0][1] / len(labels)
    metrics["zeroshot_chance"] = 1 / len(counts)

    name_source = _name_source(table, keys, name_keys, label_field)
    source_rows = table.rows(name_source).tolist()
    source_labels = [table.meta[r].get(label_field) for r in source_rows]
    word_names = caption_word_names(source_labels, [table.captions[r] for r in source_rows])
    classes = sorted(counts, key=str)
    for variant, names in (("label", label_names(classes)), ("words", word_names)):
        names = {c: names.get(c, label_names([c])[c]) for c in classes}
        class_features = class_embeddings(model, tokenizer, names, templates)
        metrics[f"zeroshot_{variant}_acc"] = zero_shot_accuracy(features, labels, class_features, classes)
    metrics["class_prompts"] = {str(c): word_names.get(c, []) for c in classes}
    metrics["linear_probe_acc"] = linear_probe_accuracy(features, labels, [keys[i] for i in labeled])
    return metrics


def _name_source(table: Table, keys: list, name_keys, label_field: str) -> list:
    if name_keys is not None:
        return list(name_keys)
    evaluated = set(keys)
    others = [k for k, m in zip(table.keys, table.meta) if k not in evaluated and m.get(label_field) is not None]
    return others or list(keys)


def format_metrics(metrics: dict) -> str:
    """A small plain-text table of the metrics evaluate() returns."""
    def cell(key):
        value = metrics.get(key)
        return "-" if value is None else f"{value:.3f}"

    lines = [f"held-out samples: {metrics.get('n_samples', 0)}  (labeled: {metrics.get('n_labeled', 0)}, "
             f"classes: {metrics.get('n_classes', '-')})",
             f"{'retrieval':<22}{'R@1':>8}{'R@5':>8}{'R@10':>8}"]
    for label, key in (("image->text", "i2t"), ("text->image", "t2i"), ("image->text (caption)", "i2t_caption"),
                       ("text->image (caption)", "t2i_caption")):
        direction, _, variant = key.partition("_")
        suffix = f"_{variant}" if variant else ""
        lines.append(f"{label:<22}" + "".join(f"{cell(f'{direction}_r{k}{suffix}'):>8}" for k in RECALL_KS))
    lines.append(f"{'chance':<22}" + "".join(f"{cell(f'retrieval_chance_r{k}'):>8}" for k in RECALL_KS))
    lines.append(f"{'classification':<26}{'acc':>8}")
    for label, key in (("zero-shot (labels)", "zeroshot_label_acc"),
                       ("zero-shot (caption words)", "zeroshot_words_acc"), ("linear probe", "linear_probe_acc"),
                       ("majority class", "majority_rate"), ("chance", "zeroshot_chance")):
        lines.append(f"{label:<26}{cell(key):>8}")
    return "\n".join(lines)
