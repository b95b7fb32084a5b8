"""`tradeoff --seeds auto`: seeds are added only where an outcome is open, the cap and the time budget stop it,
the tests run at a level that keeps the overall error at 5 % over the repeated looks, and the report says why
it stopped and what stayed inconclusive."""

import importlib

import numpy as np
import pandas as pd
import pytest

import cli
import mitigation
from dataio.errors import UsageError
from mitigation.tradeoff.sequential import POCOCK_CONSTANTS, SeedPlan, looks, next_round, nominal_level, seed_plan
from mitigation.tradeoff.stats import EFFECTS

tradeoff_module = importlib.import_module("mitigation.tradeoff.run")
PROBE_BY_SEED = [0.60, 0.58, 0.61, 0.59, 0.62, 0.60, 0.57, 0.61, 0.60, 0.59]


def test_the_per_look_level_keeps_the_overall_false_positive_rate_at_five_percent():
    """Simulated null trials with K equally spaced looks: rejecting at any look happens about 5 % of the time at
    the nominal level, and far more often at 0.05 per look (the error --seeds auto would make without it)."""
    rng = np.random.default_rng(0)
    for count in (2, 5, 8):
        steps = rng.standard_normal((40000, count))
        z = np.abs(np.cumsum(steps, axis=1)) / np.sqrt(np.arange(1, count + 1))
        from scipy.stats import norm

        corrected = (z > norm.isf(nominal_level(count) / 2)).any(axis=1).mean()
        naive = (z > norm.isf(0.025)).any(axis=1).mean()
        assert abs(corrected - 0.05) < 0.008, (count, corrected)
        assert naive > 0.075, (count, naive)
    assert nominal_level(1) == pytest.approx(0.05, abs=1e-4) and max(POCOCK_CONSTANTS) == looks(3, 12)


def synthetic_rows(spec_label: str, seed: int) -> dict:
    """`clear` costs 5 probe points in every seed (settled at 3 seeds); `noisy` moves it by +-3 points at random
    (stays inconclusive); both halve memorization."""
    probe = PROBE_BY_SEED[seed]
    change = {"baseline": 0.0, "clear": -0.05 + 0.001 * (seed % 2),
              "noisy": float(np.random.default_rng(seed).choice([-0.03, 0.03]))}[spec_label]
    memorization = 0.08 + 0.002 * seed
    return {"strategy": spec_label, "seed": seed, "memorization": memorization * (1 if spec_label == "baseline" else 0.5),
            "linear_probe_acc": probe + change, "seconds": 1.0, "settings": "s0", "captions": "primary only",
            "removed": 0, "removed_injected": 0, "candidates_scored": 10, "candidates_total": 10,
            "memorization_median": memorization, "eval_pairs": 10, "train_pairs_f": 100}


def fake_runs(monkeypatch, labels: dict, seconds: float = 1.0) -> list:
    """Replace training with synthetic rows (`labels` maps a strategy to its synthetic behaviour): these tests are
    about which runs the sequential loop asks for."""
    asked = []

    def one_run(session, spec, seed, prepared, key):
        asked.append((labels[spec.label], seed))
        return {**synthetic_rows(labels[spec.label], seed), "strategy": spec.label, "seconds": seconds,
                "settings": key}

    monkeypatch.setattr(tradeoff_module, "one_run", one_run)
    monkeypatch.setattr(tradeoff_module, "prepare", lambda session, spec: None)
    monkeypatch.setattr(tradeoff_module, "with_matched_baseline", lambda rows, out: rows)
    monkeypatch.setattr(tradeoff_module.report, "plot", lambda rows, path: path)
    return asked


def test_seeds_are_added_only_where_an_outcome_is_open(shapes, tmp_path, monkeypatch):
    asked = fake_runs(monkeypatch, {"baseline": "baseline", "text-noise:sigma=0.3": "clear",
                                    "text-noise:sigma=0.1": "noisy"})
    result = mitigation.tradeoff(shapes, "baseline,text-noise:sigma=0.3,text-noise:sigma=0.1", tmp_path / "t",
                                 seeds="auto", max_seeds=6, epochs=1, batch_size=32, progress=False)
    stopping = result.stopping
    assert stopping.reason == "max seeds"
    assert stopping.seeds == {"baseline": 6, "text-noise:sigma=0.3": 3, "text-noise:sigma=0.1": 6}
    assert sorted(s for label, s in asked if label == "clear") == [0, 1, 2]  # its loss settled at 3 seeds
    assert "linear_probe_acc" in stopping.still_open["text-noise:sigma=0.1"]
    assert "text-noise:sigma=0.3" not in stopping.still_open
    assert result.settings["alpha"] == pytest.approx(nominal_level(4), abs=1e-5)
    text = (tmp_path / "t" / "tradeoff.md").read_text()
    assert "stopped because the seed cap was reached" in text and "Pocock's per-look level for 4 looks" in text
    assert "Still inconclusive: text-noise:sigma=0.1: " in text
    assert len(pd.read_csv(tmp_path / "t" / "tradeoff.csv")) == 15


def test_the_budget_stops_before_a_round_that_would_overrun_it(shapes, tmp_path, monkeypatch):
    fake_runs(monkeypatch, {"baseline": "baseline", "text-noise:sigma=0.3": "clear"}, seconds=200.0)
    now = [0.0]
    real_one_run = tradeoff_module.one_run

    def one_run_taking_200_seconds(*arguments):
        now[0] += 200.0
        return real_one_run(*arguments)

    monkeypatch.setattr(tradeoff_module, "one_run", one_run_taking_200_seconds)
    monkeypatch.setattr(tradeoff_module, "clock", lambda: now[0])
    result = mitigation.tradeoff(shapes, "baseline,text-noise:sigma=0.3", tmp_path / "t", seeds="auto",
                                 budget_minutes=14, epochs=1, batch_size=32, progress=False)
    # seed 1 would end at 800 s (fits 840 s); seed 2, estimated at 2 x 200 s more, at 1,200 s: it does not
    assert result.stopping.reason == "budget" and result.stopping.seeds == {"baseline": 2, "text-noise:sigma=0.3": 2}
    assert "would not have fitted the time budget" in (tmp_path / "t" / "tradeoff.md").read_text()


def test_next_round_trains_everything_first_then_the_baseline_with_the_open_strategies():
    plan = SeedPlan(None, 3, 10)
    rows = [{**synthetic_rows(label, seed)} for seed in range(3) for label in ("baseline", "clear", "noisy")]
    labels = ["baseline", "clear", "noisy"]
    assert next_round(rows[:6], labels, 2, plan, EFFECTS) == labels
    assert next_round(rows, labels, 3, plan, EFFECTS) == ["baseline", "noisy"]
    settled = [r for r in rows if r["strategy"] != "noisy"]
    assert next_round(settled, ["baseline", "clear"], 3, plan, EFFECTS) == []


@pytest.mark.parametrize("arguments, message", [
    (dict(seeds="many"), "whole number or auto"),
    (dict(seeds=3, budget_minutes=10), "go with --seeds auto"),
    (dict(seeds="auto", max_seeds=2), "at least 3"),
    (dict(seeds="auto", max_seeds=20), "at most 10"),
    (dict(seeds="auto", budget_minutes=0), "above 0"),
])
def test_bad_seed_settings_are_usage_errors(arguments, message):
    with pytest.raises(UsageError, match=message):
        seed_plan(**arguments)


def test_auto_needs_a_baseline_and_the_cli_says_so_in_one_line(shapes, tmp_path, capsys):
    code = cli.main(["tradeoff", "--data", str(shapes), "--out", str(tmp_path / "t"), "--strategies", "text-noise",
                     "--seeds", "auto", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and "add baseline to --strategies" in error and error.count("\n") == 1
    code = cli.main(["tradeoff", "--data", str(shapes), "--out", str(tmp_path / "t"), "--curve", "--seeds", "auto"])
    assert code == 2 and "--seeds with --curve is a whole number" in capsys.readouterr().err


def test_auto_on_real_training_runs_and_reports(shapes, tmp_path):
    """The real path, tiny: 3 seeds of both, then a fourth only if an outcome is open; the report says which."""
    result = mitigation.tradeoff(shapes, "baseline,text-noise:sigma=0.3", tmp_path / "t", samples=100, seeds="auto",
                                 max_seeds=4, epochs=1, batch_size=32, progress=False)
    frame = pd.read_csv(tmp_path / "t" / "tradeoff.csv")
    seeds = frame.groupby("strategy")["seed"].apply(sorted).to_dict()
    assert seeds["baseline"] in ([0, 1, 2], [0, 1, 2, 3]) and seeds["text-noise:sigma=0.3"] in ([0, 1, 2], [0, 1, 2, 3])
    assert result.stopping.seeds == {label: len(s) for label, s in seeds.items()}
    assert result.stopping.reason in ("settled", "max seeds")
    assert "Seeds added until the outcomes settled" in (tmp_path / "t" / "tradeoff.md").read_text()


@pytest.fixture(scope="module")
def shapes(make_synthetic):
    return make_synthetic(n=240, fmt="webdataset", inject=0.1, seed=12)
