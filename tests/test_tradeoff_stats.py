"""The trade-off's verdict rule on synthetic run logs: paired t over seeds, four outcomes against the smallest
effect that matters, Holm's correction, the minimum detectable effect, and what may be recommended."""

import numpy as np
import pytest
from scipy import stats

from dataio.errors import UsageError
from mitigation.tradeoff.stats import compare, compare_all, detectable_effect, holm, resolve_effects
from mitigation.tradeoff.trend import trend_table, trends
from mitigation.tradeoff.verdict import verdict

BASE_MEM = (0.090, 0.081, 0.086, 0.088, 0.084)
BASE_PROBE = (0.59, 0.61, 0.58, 0.60, 0.62)


def run_log(probe_change, memorization_factor=0.6, seeds=3, strategy="candidate", extra=None) -> list:
    """Baseline runs and one strategy's: memorization scaled by `memorization_factor`, the probe moved per seed."""
    rows = []
    for seed in range(seeds):
        rows.append({"strategy": "baseline", "seed": seed, "memorization": BASE_MEM[seed],
                     "linear_probe_acc": BASE_PROBE[seed], **(extra or {})})
        rows.append({"strategy": strategy, "seed": seed, "memorization": BASE_MEM[seed] * memorization_factor,
                     "linear_probe_acc": BASE_PROBE[seed] + probe_change[seed], **(extra or {})})
    return rows


def test_the_comparison_is_a_paired_t_test_over_seeds():
    base, other = [0.50, 0.55, 0.47, 0.52], [0.46, 0.50, 0.45, 0.47]
    rows = [{"strategy": s, "seed": k, "linear_probe_acc": v} for s, values in (("baseline", base), ("x", other))
            for k, v in enumerate(values)]
    c = compare(rows, "x", "linear_probe_acc", compared=2)
    diffs = np.subtract(other, base)
    assert c.mean == pytest.approx(diffs.mean()) and c.p == pytest.approx(stats.ttest_rel(other, base).pvalue)
    half = stats.t.ppf(1 - 0.05 / 2 / 2, 3) * diffs.std(ddof=1) / 2  # level 1 - alpha / 2 strategies
    assert (c.low, c.high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))


def test_a_consistent_three_point_probe_loss_is_a_loss_and_never_recommended():
    rows = run_log([-0.03, -0.031, -0.029])
    found = compare_all(rows)
    assert found["candidate", "memorization"].outcome == "gain"
    assert found["candidate", "linear_probe_acc"].outcome == "loss"
    sentences = verdict(rows)
    assert sentences[-1].startswith("Recommendation: none; candidate lowered memorization but lost linear-probe")


def test_a_tiny_consistent_change_with_tight_intervals_is_no_change_and_recommended():
    rows = run_log([0.002, 0.0025, 0.0015])
    assert compare_all(rows)["candidate", "linear_probe_acc"].outcome == "no change"
    assert verdict(rows)[-1].startswith("Recommendation for this data: candidate;")


def test_a_noisy_change_is_inconclusive_and_its_open_loss_is_named():
    rows = run_log([0.03, -0.04, 0.01])
    c = compare_all(rows)["candidate", "linear_probe_acc"]
    assert c.outcome == "inconclusive" and c.loss_open
    last = verdict(rows)[-1]
    assert last.startswith("Recommendation: none;") and "could not rule out a loss of 0.01 in linear-probe" in last


def test_an_inconclusive_gain_that_rules_out_a_loss_does_not_block_a_recommendation():
    rows = run_log([0.01, 0.02, 0.03])  # interval about -0.005 to +0.045: a gain of 1 point is not ruled out
    c = compare_all(rows)["candidate", "linear_probe_acc"]
    assert c.outcome == "inconclusive" and c.low > -0.01 and not c.loss_open
    assert verdict(rows)[-1].startswith("Recommendation for this data: candidate;")


def test_one_seed_is_inconclusive_everywhere_and_recommends_nothing():
    rows = run_log([0.0], seeds=1)
    assert {c.outcome for c in compare_all(rows).values()} == {"inconclusive"}
    assert verdict(rows)[-1].startswith("Recommendation: none;")


def test_holm_correction_counts_the_strategies_compared():
    # p about 0.03 for each strategy: a gain alone, inconclusive once four strategies share the correction
    change = [-0.030, -0.018, -0.024]
    alone = run_log([0.0] * 3, memorization_factor=1.0)
    for seed, delta in enumerate(change):
        alone[2 * seed + 1]["memorization"] = BASE_MEM[seed] + delta
    single = compare_all(alone)["candidate", "memorization"]
    assert single.p < 0.05 and single.outcome == "gain"
    many = list(alone)
    for name in ("b", "c", "d"):
        many += [dict(r, strategy=name) for r in alone if r["strategy"] == "candidate"]
    crowded = compare_all(many)["candidate", "memorization"]
    assert crowded.p == pytest.approx(single.p) and crowded.p_holm > 0.05 and crowded.outcome == "inconclusive"
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_memorization_effect_is_relative_to_the_baseline_and_user_settable():
    rows = run_log([0.0] * 3, memorization_factor=0.95)  # 5 % lower every seed
    default = compare_all(rows)["candidate", "memorization"]
    assert default.effect == pytest.approx(0.1 * np.mean(BASE_MEM[:3]))
    assert default.outcome == "no change"
    strict = compare_all(rows, resolve_effects({"memorization": 0.01}))["candidate", "memorization"]
    assert strict.outcome == "gain"
    with pytest.raises(UsageError, match="unknown metric recall"):
        resolve_effects({"recall": 0.1})


def test_zero_shot_is_compared_too():
    rows = run_log([0.0] * 3)
    for row in rows:
        row["zeroshot_words_acc"] = 0.3 - (0.05 if row["strategy"] == "candidate" else 0) + 0.001 * row["seed"]
    assert compare_all(rows)["candidate", "zeroshot_words_acc"].outcome == "loss"
    assert verdict(rows)[-1].startswith("Recommendation: none; candidate lowered memorization but lost zero-shot")


def test_minimum_detectable_effect_is_where_the_paired_t_test_has_80_percent_power():
    sd, n = 0.01, 3
    mde = detectable_effect(sd, n)
    critical = stats.t.ppf(0.975, n - 1)
    shift = mde * np.sqrt(n) / sd
    power = stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift)
    assert power == pytest.approx(0.8, abs=1e-4)
    # a Monte Carlo check of the same power
    rng = np.random.default_rng(0)
    draws = rng.normal(mde, sd, size=(20000, n))
    p = stats.ttest_1samp(draws, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.02)
    assert detectable_effect(sd, 10) < mde and detectable_effect(sd, 1) is None
    assert any("Smallest true effect these seeds detect" in s for s in verdict(run_log([0.03, -0.04, 0.01])))


def curve_rows(metric_at) -> list:
    """A removal curve: the count-0 point and two rankings at five counts, three seeds each."""
    rows = [{"ranking": "none", "removed": 0, "seed": s, "linear_probe_acc": metric_at("none", 0, s)} for s in range(3)]
    for ranking in ("falls", "flat"):
        rows += [{"ranking": ranking, "removed": n, "seed": s, "linear_probe_acc": metric_at(ranking, n, s)}
                 for n in (100, 200, 400, 800, 1600) for s in range(3)]
    return rows


def test_the_curve_trend_finds_a_steady_fall_and_not_noise():
    rng = np.random.default_rng(3)
    noise = {(r, n, s): rng.normal(0, 0.01) for r in ("none", "falls", "flat") for n in (0, 100, 200, 400, 800, 1600)
             for s in range(3)}
    rows = curve_rows(lambda r, n, s: 0.6 - (n / 1e4 if r == "falls" else 0) + noise[r, n, s])
    found = {t.ranking: t for t in trends(rows, ["linear_probe_acc"])}
    assert found["falls"].points == found["flat"].points == 18
    assert found["falls"].rho < -0.8 and found["falls"].p < 0.01
    assert found["flat"].p > 0.05
    expected_rho = stats.spearmanr([0] * 3 + [n for n in (100, 200, 400, 800, 1600) for _ in range(3)],
                                   [row["linear_probe_acc"] for row in rows if row["ranking"] in ("none", "falls")])[0]
    assert found["falls"].rho == pytest.approx(expected_rho)
    assert "| falls | linear_probe_acc | -0." in trend_table(rows, ["linear_probe_acc"], {})


def test_an_interval_excludes_zero_exactly_where_the_outcome_is_a_gain_or_a_loss():
    # Bonferroni intervals crossed zero beside a Holm rejection ("loss", interval -0.12 to +0.005) in a real run
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        rows = []
        for seed in range(5):
            base = 0.5 + rng.normal(0, 0.02)
            rows.append({"strategy": "baseline", "seed": seed, "linear_probe_acc": base})
            for k, shift in enumerate((-0.02, -0.01, 0.0, 0.015)):
                rows.append({"strategy": f"s{k}", "seed": seed, "linear_probe_acc": base + shift + rng.normal(0, 0.012)})
        for (strategy, metric), c in compare_all(rows).items():
            if metric != "linear_probe_acc" or c.outcome == "no change":
                continue
            checked += 1
            assert (c.outcome in ("gain", "loss")) == (c.low > 0 or c.high < 0), (strategy, c)
    assert checked > 100
