"""Utility metrics on hand-made cases with known answers; the encoders' contract."""

import open_clip
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from train.data import table_from_tensors
from train.evaluate import (
    encode_images,
    encode_texts,
    evaluate,
    format_metrics,
    linear_probe_accuracy,
    match_ranks,
    retrieval_metrics,
    zero_shot_accuracy,
)
from train.models import create_model
from train.prompts import caption_word_names, label_names

E = torch.eye(4)


def test_retrieval_exact_index_and_caption_identity_by_hand():
    images = E
    texts = torch.stack([E[0], E[2], E[2], 0.6 * E[3] + 0.8 * E[0]])
    captions = ["cat", "dog", "dog", "bird"]  # texts 1 and 2 are the same caption, so the same embedding
    metrics = retrieval_metrics(images, texts, captions, ks=(1, 2, 10))
    # image->text exact ranks [0, 3, 1, 0]; by caption [0, 2, 0, 0]
    assert metrics["i2t_r1"] == 0.5 and metrics["i2t_r2"] == 0.75 and metrics["i2t_r10"] == 1.0
    assert metrics["i2t_r1_caption"] == 0.75 and metrics["i2t_r2_caption"] == 0.75
    # text->image exact ranks [0, 3, 0, 1]; by caption [0, 0, 0, 1]
    assert metrics["t2i_r1"] == 0.5 and metrics["t2i_r2"] == 0.75
    assert metrics["t2i_r1_caption"] == 0.75 and metrics["t2i_r2_caption"] == 1.0
    assert metrics["retrieval_chance_r1"] == 0.25 and metrics["retrieval_chance_r10"] == 1.0


def test_ties_with_non_matches_count_as_misses():
    queries = torch.ones(3, 2)  # every query scores 1 against both gallery items
    ranks = match_ranks(queries, torch.eye(2), torch.arange(3), torch.arange(2))
    assert ranks.tolist() == [1, 1, 2]  # a tie with the other item is a miss at top-1; no match at all: last


def test_zero_shot_and_linear_probe_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    classes = ["left", "right"]
    class_features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert zero_shot_accuracy(features, ["left", "left", "right", "right"], class_features, classes) == 1.0
    assert zero_shot_accuracy(features, ["left", "right", "right", "left"], class_features, classes) == 0.5

    generator = torch.Generator().manual_seed(0)
    labels = [i % 3 for i in range(90)]
    centers = torch.eye(3, 8) * 5
    separable = centers[labels] + 0.1 * torch.randn(90, 8, generator=generator)
    keys = [f"k{i}" for i in range(90)]
    assert linear_probe_accuracy(separable, labels, keys) == 1.0
    assert linear_probe_accuracy(separable, [0] * 90, keys) is None
    noise = torch.randn(90, 8, generator=generator)
    assert linear_probe_accuracy(noise, labels, keys) < 0.6
    assert linear_probe_accuracy(separable, labels, keys, folds=5) == 1.0
    assert linear_probe_accuracy(noise, labels, keys, folds=5) < 0.6
    with pytest.raises(ValueError, match="at least 2 folds"):
        linear_probe_accuracy(separable, labels, keys, folds=1)


def test_probe_folds_split_keys_by_hash_into_equal_parts():
    from train.evaluate import _hash_folds

    keys = [f"k{i}" for i in range(2000)]
    fold = _hash_folds(keys, 5, seed=3)
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    assert all(abs((fold == f).mean() - 0.2) < 0.03 for f in range(5))
    # a key's fold does not depend on the other keys
    assert _hash_folds(keys[:50], 5, seed=3).tolist() == fold[:50].tolist()


def test_class_names_from_labels_and_from_caption_words():
    assert label_names(["hot_air-balloons"]) == {"hot_air-balloons": ["hot air balloons"]}
    names = caption_word_names(["a", "a", "b", "b"], [["the red fox", "fox"], ["a fox sleeping"],
                                                      ["blue whale thing"], ["whale"]])
    assert names["a"][0] == "fox" and names["b"][0] == "whale"
    assert caption_word_names(["only"], [["the of and"]]) == {"only": ["only"]}


class ColourModel(nn.Module):
    """A known model: an image's embedding is its mean colour; a text's is the sum of its colour words."""

    def __init__(self, tokenizer):
        super().__init__()
        self.visual = nn.Module()
        self.visual.image_size = 8
        self.visual.preprocess_cfg = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
        self.words = nn.Embedding(49408, 3)
        nn.init.zeros_(self.words.weight)
        for axis, word in enumerate(["red", "green", "blue"]):
            token = tokenizer.encode(word)[0]
            self.words.weight.data[token, axis] = 1.0

    def encode_image(self, images, normalize=False):
        return images.mean((2, 3))

    def encode_text(self, tokens, normalize=False):
        return self.words(tokens).sum(1)


def test_evaluate_end_to_end_on_a_model_with_known_answers():
    tokenizer = open_clip.get_tokenizer("clipmem-tiny")
    model = ColourModel(tokenizer)
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    names = [list(colours)[i % 3] for i in range(30)] + ["red"] * 6  # red is the majority class
    images = torch.stack([torch.tensor(colours[n], dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8) for n in names])
    keys = [f"{i:03d}" for i in range(len(names))]
    table = table_from_tensors(keys, images.contiguous(), [f"a {n} thing" for n in names],
                               [{"category": n} for n in names])
    metrics = evaluate(model, tokenizer, table, keys)
    # Every caption repeats 12+ times: exact-index top-1 cannot pick the one right copy among identical ties.
    assert metrics["i2t_r1"] == 0.0 and metrics["t2i_r1"] == 0.0
    assert metrics["i2t_r1_caption"] == 1.0 and metrics["t2i_r1_caption"] == 1.0
    assert metrics["zeroshot_label_acc"] == 1.0 and metrics["zeroshot_words_acc"] == 1.0
    assert metrics["class_prompts"] == {"blue": ["blue"], "green": ["green"], "red": ["red"]}
    assert metrics["majority_rate"] == pytest.approx(16 / 36) and metrics["zeroshot_chance"] == pytest.approx(1 / 3)
    assert metrics["linear_probe_acc"] == 1.0
    assert metrics["n_samples"] == 36 and metrics["n_classes"] == 3
    text = format_metrics(metrics)
    assert "linear probe" in text and "1.000" in text


def test_encoders_are_normalized_batch_independent_and_leave_the_mode_alone():
    model, tokenizer, _ = create_model("clipmem-tiny", seed=0)
    model.train()
    images = torch.randint(0, 256, (10, 3, 64, 64), dtype=torch.uint8)
    whole = encode_images(model, images, batch_size=10)
    pieces = encode_images(model, images, batch_size=3)
    assert model.training  # restored
    assert torch.allclose(whole.norm(dim=-1), torch.ones(10), atol=1e-5)
    assert torch.allclose(whole, pieces, atol=1e-5)  # eval mode: BatchNorm uses running statistics
    assert not whole.requires_grad
    augmented = encode_images(model, images, augment=torch.Generator().manual_seed(1))
    assert not torch.allclose(augmented, whole, atol=1e-3)
    tokens = tokenizer(["a red circle", "a blue square", "a red circle"])
    texts = encode_texts(model, tokens, batch_size=2)
    assert torch.allclose(texts[0], texts[2]) and torch.allclose(texts.norm(dim=-1), torch.ones(3), atol=1e-5)
    model.eval()
    assert torch.allclose(texts, F.normalize(model.encode_text(tokens), dim=-1).detach(), atol=1e-6)
