"""The detection bench's split of the canary estimate's error into contamination and difficulty."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate.rankings import DEFAULT_RANKING


@pytest.fixture(scope="module")
def detection_bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "detection.py"
    spec = importlib.util.spec_from_file_location("bench_detection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normal_scores(count: int, mean: float) -> np.ndarray:
    """`count` evenly spaced quantiles of a unit normal: a sample with no sampling noise, so margins stay small."""
    from scipy.stats import norm

    return mean + norm.ppf((np.arange(count) + 0.5) / count)


def frames_with(matched_mean: float) -> pd.DataFrame:
    """900 clean pairs, 100 cross-category swaps ranked higher, 400 random-caption canaries (the matched kind)
    around `matched_mean` and 400 generic ones far above everything."""
    users = pd.DataFrame({"score": np.r_[normal_scores(900, 0), normal_scores(100, 2)],
                          "injected": np.r_[np.zeros(900, bool), np.ones(100, bool)], "canary_kind": ""})
    canaries = pd.DataFrame({"score": np.r_[normal_scores(400, matched_mean), normal_scores(400, 6)],
                             "injected": False, "canary_kind": ["random-caption"] * 400 + ["generic"] * 400})
    return pd.concat([users, canaries], ignore_index=True).rename(columns={"score": f"rank_{DEFAULT_RANKING}"})


def test_canaries_ranked_like_the_noise_leave_only_contamination(detection_bench):
    parts = detection_bench.estimate_error_parts(frames_with(matched_mean=2.0), "cross-category")
    assert parts["estimate"] - parts["true"] == pytest.approx(parts["contamination"] + parts["difficulty"])
    assert abs(parts["canaries_against_noise"] - 0.5) < 0.02
    assert abs(parts["difficulty"]) < 0.02
    # graded against a 10 % mismatched pool that they outrank half the time: -0.1 x (AUROC - 0.5)
    assert parts["contamination"] == pytest.approx(-0.1 * (parts["true"] - 0.5), abs=0.01)
    assert abs(parts["against_clean_true_share_error"]) < 0.02
    assert parts["true_inside_span"]


def test_canaries_easier_than_the_noise_show_as_difficulty_and_defeat_the_correction(detection_bench):
    parts = detection_bench.estimate_error_parts(frames_with(matched_mean=4.0), "unique-swap")
    assert parts["canaries_against_noise"] > 0.8
    assert parts["difficulty"] > 0.05
    assert parts["against_clean_true_share_error"] > parts["difficulty"]  # assumes 0.5 against the noise
    assert not parts["true_inside_span"]  # every kind is easier than the noise
