"""Pretrained weights from a file: the CLIP-score baseline of that model, and reference models that start from it."""

import pytest
import torch

import curate
import train.models as models
from curate.pipeline import pretrained_cosine
from curate.rankings import DEFAULT_RANKING, inputs_used
from dataio.errors import UsageError
from train.config import TrainConfig
from train.data import load_table
from train.loop import train_clip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An open_clip checkpoint on disk (a plain state dict, as open_clip's trainer saves under 'state_dict')."""
    model, _, _ = models.create_model("clipmem-tiny", seed=42)
    path = tmp_path_factory.mktemp("weights") / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, path)
    return path, model


def test_a_checkpoint_file_loads_with_its_weights(checkpoint):
    path, saved = checkpoint
    loaded, _, _ = models.create_model("clipmem-tiny", pretrained=str(path), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))
    fresh, _, _ = models.create_model("clipmem-tiny", seed=0)
    assert not torch.equal(fresh.text_projection, loaded.text_projection)


def test_a_checkpoint_of_another_architecture_is_a_one_line_error(checkpoint):
    with pytest.raises(UsageError, match="cannot load it into clipmem-tiny-vit"):
        models.create_model("clipmem-tiny-vit", pretrained=str(checkpoint[0]))


def test_an_unreachable_hub_tag_fails_at_once_and_leaves_the_hub_setting_alone(monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    before = hub.HF_HUB_OFFLINE
    with pytest.raises(UsageError, match="--pretrained openai for RN50"):
        models.create_model("RN50", pretrained="openai")
    assert hub.HF_HUB_OFFLINE == before


def test_reference_models_start_from_the_checkpoint(make_synthetic, checkpoint):
    path, saved = checkpoint
    table = load_table(make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1), progress=False)
    # lr 0: AdamW's step and its weight decay both scale with lr, so the text tower (no running statistics)
    # ends exactly where it started
    result = train_clip(table, table.keys, TrainConfig(pretrained=str(path), lr=0.0, epochs=1, batch_size=16),
                        progress=False)
    assert torch.equal(result.model.text_projection, saved.text_projection)


def test_flag_with_a_pretrained_baseline_and_reference_models_initialised_from_it(make_synthetic, checkpoint,
                                                                                    tmp_path):
    path, _ = checkpoint
    data = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    result = curate.flag(data, tmp_path / "out", folds=2, epochs=1, batch_size=16, pretrained=str(path),
                         pretrained_model="clipmem-tiny", init_from=str(path), progress=False)
    settings = result.summary["settings"]
    assert settings["pretrained"] == str(path) and settings["training"]["pretrained"] == str(path)
    table = load_table(data, progress=False)
    expected = pretrained_cosine("clipmem-tiny", str(path), table, list(result.scores["key"]), 0, False)
    assert result.scores["clipscore"].to_numpy() == pytest.approx(expected, abs=1e-5)
    # the default ranking takes the pretrained cosine beside the held-out models' corrected alignment
    assert inputs_used(DEFAULT_RANKING, result.scores) == "combined-csls of align_csls + clipscore + csl + neighbour"
