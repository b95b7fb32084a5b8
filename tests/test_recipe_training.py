"""A mitigated folder's recipe reaches our training loop; a command-line option still wins over it."""

import json

import cli
import train
from mitigation.strategies import mitigate

TRAIN = ["--epochs", "1", "--batch-size", "16", "--no-progress", "--heldout-frac", "0.2"]


def _trained_config(run_dir):
    return json.loads((run_dir / "train_log.json").read_text())["config"]


def test_train_applies_the_recipe_of_a_mitigated_copy(make_synthetic, tmp_path):
    data = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    noisy = mitigate(data, "text-noise,image-aug", tmp_path / "noisy", sigma=0.2, progress=False).path
    fast = {"epochs": 1, "batch_size": 16, "heldout_frac": 0.2, "progress": False}
    run = train.train(noisy, tmp_path / "run", **fast)
    config = _trained_config(tmp_path / "run")
    assert config["text_noise_sigma"] == 0.2 and config["image_aug"] is True
    assert run.config.text_noise_sigma == 0.2 and run.metrics["n_samples"] == len(run.heldout_keys)

    # the command line applies the recipe the same way, and an option given there wins over it
    assert cli.main(["train", "--data", str(noisy), "--out", str(tmp_path / "run0"), "--text-noise", "0",
                     "--no-image-aug", *TRAIN]) == 0
    config = _trained_config(tmp_path / "run0")
    assert config["text_noise_sigma"] == 0.0 and config["image_aug"] is False


def test_train_without_a_recipe_uses_the_defaults(make_synthetic, tmp_path):
    data = make_synthetic(n=60, fmt="webdataset", inject=0.1, seed=1)
    assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TRAIN]) == 0
    config = _trained_config(tmp_path / "run")
    assert config["text_noise_sigma"] == 0.0 and config["caption_sampling"] is False
