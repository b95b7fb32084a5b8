"""mitigation.json: written beside the shards, read back by the training loop through training_overrides."""

import json

import pytest

from dataio.errors import UsageError
from dataio.recipe import RECIPE_NAME, read_recipe, training_overrides
from mitigation.strategies import mitigate

DEFAULTS = {"text_noise_sigma": 0.0, "image_aug": False, "caption_sampling": False}


@pytest.fixture(scope="module")
def data(make_synthetic):
    return make_synthetic(n=24, fmt="webdataset", inject=0.0, seed=8)


def run(data, out, strategy, **options):
    return mitigate(data, strategy, out, progress=False, **options)


def test_text_noise_records_sigma_and_leaves_the_data_alone(data, tmp_path):
    result = run(data, tmp_path / "noise", "text-noise", sigma=0.2)
    assert training_overrides(result.path) == {**DEFAULTS, "text_noise_sigma": 0.2}
    assert result.counts == {"kept": 24, "changed": 0, "removed": 0, "unreadable": 0}
    recipe = read_recipe(result.path)
    assert recipe["strategies"][0] == {"name": "text-noise", "options": {"sigma": 0.2},
                                       "training": {"text_noise_sigma": 0.2}, "stats": {}}
    assert recipe["counts"]["input"] == 24
    assert recipe["source"]["path"] == str(data.resolve()) and recipe["source"]["format"] == "webdataset"


def test_default_sigma_is_the_papers_and_image_aug_combines(data, tmp_path):
    result = run(data, tmp_path / "both", "text-noise,image-aug")
    assert training_overrides(result.path) == {**DEFAULTS, "text_noise_sigma": 0.15, "image_aug": True}


def test_a_chained_mitigation_keeps_earlier_training_settings(data, tmp_path):
    noisy = run(data, tmp_path / "noise", "text-noise", sigma=0.1)
    chained = run(noisy.path, tmp_path / "chained", "image-aug")
    assert training_overrides(chained.path) == {**DEFAULTS, "text_noise_sigma": 0.1, "image_aug": True}
    assert read_recipe(chained.path)["source"]["recipe"]["strategies"] == ["text-noise"]


def test_folders_without_recipe_get_the_defaults(data):
    assert read_recipe(data) == {}
    assert training_overrides(data) == DEFAULTS


def test_malformed_recipes_are_usage_errors_naming_the_file(tmp_path):
    (tmp_path / RECIPE_NAME).write_text("{not json")
    with pytest.raises(UsageError, match=RECIPE_NAME):
        read_recipe(tmp_path)
    (tmp_path / RECIPE_NAME).write_text(json.dumps({"training": {"image_aug": "yes"}}))
    with pytest.raises(UsageError, match="image_aug"):
        training_overrides(tmp_path)
    (tmp_path / RECIPE_NAME).write_text(json.dumps({"training": {"text_noise_sigma": -1}}))
    with pytest.raises(UsageError, match="text_noise_sigma"):
        training_overrides(tmp_path)


@pytest.mark.parametrize("sigma", [0.0, -0.1, 2.0, float("nan")])
def test_sigma_outside_the_useful_range_is_refused(data, tmp_path, sigma):
    with pytest.raises(UsageError, match="--sigma"):
        run(data, tmp_path / "bad", "text-noise", sigma=sigma)
    assert not (tmp_path / "bad").exists()
