"""Canaries: planted mismatched pairs that are trained on, graded on, and never written; the learned ranking,
--method auto and --precision built on them."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import cli
import curate
from curate import trust
from curate.assessment import assess
from curate.canaries import CANARY_KINDS, PREFIX, plant_canaries, with_canaries
from curate.outputs import format_console_summary
from curate.protocols import kfold_plan
from curate.rankings import DEFAULT_RANKING
from train.data import load_table

FAST = {"folds": 3, "batch_size": 64, "lr": 1e-3, "progress": False}  # re-scoring the shared run: no epochs


@pytest.fixture(scope="module")
def canary_run(shapes_run, tmp_path_factory):
    """The shared run (conftest.shapes_run: 480 synthetic shapes, 10 % swapped, 10 % canaries, method auto), its
    output copied as trained, since these tests re-score into it."""
    data, _, _, result, pristine = shapes_run
    out = tmp_path_factory.mktemp("canaries") / "run"
    shutil.copytree(pristine, out)
    return data, out, result


def test_no_canary_reaches_an_output(canary_run):
    data, out, result = canary_run
    scores = pd.read_parquet(out / "scores.parquet")
    assert sorted(scores["key"]) == sorted(load_table(data, progress=False).keys)
    assert not scores["key"].str.startswith(PREFIX).any()
    assert not pd.read_parquet(out / "flagged.parquet")["key"].str.startswith(PREFIX).any()
    assert PREFIX not in (out / "report.html").read_text()
    # ...while 48 of them were planted, of every kind, and graded
    canaries = json.loads((out / "summary.json").read_text())["canaries"]
    assert canaries["count"] == 48 and set(canaries["by_kind"]) == set(CANARY_KINDS)
    assert {DEFAULT_RANKING, "combined-neighbour", "clipmem", "csl", "learned", "random"} <= set(canaries["rankings"])
    for grade in canaries["rankings"].values():
        assert grade["auroc_ci"][0] <= grade["auroc"] <= grade["auroc_ci"][1]


def test_planted_pairs_are_trained_on_and_scored_like_pairs(canary_run):
    _, out, result = canary_run
    plan = json.loads((out / "models" / "plan.json").read_text())
    planted = result.canaries["key"].tolist()
    trained = {key for model in plan["models"] for key in model["train_keys"]}
    assert set(planted) <= trained
    # each canary is held out by exactly the model that holds out the pair whose image it shows
    spec = pd.read_parquet(out / "models" / "canaries.parquet")
    assert all(plan["without_model"][c] == plan["without_model"][i] for c, i in zip(spec["key"], spec["image_key"]))
    # so the memorization scores, the training loss and the neighbour terms are defined for every canary
    assert result.canaries[["clipmem_raw", "csl", "neighbour", "align_csls"]].notna().all().all()


def test_canaries_are_found_and_the_estimate_tracks_the_truth(canary_run):
    _, out, result = canary_run
    canaries = result.summary["canaries"]
    # auto kept the default unless a ranking found every canary kind better; learned graded on kinds it never saw
    rankings, chosen = canaries["rankings"], canaries["chosen"]
    assert set(rankings["learned"]["auroc_unseen_kind"]) == set(CANARY_KINDS)
    assert chosen == DEFAULT_RANKING or trust.beats_on_every_kind(rankings[chosen], rankings[DEFAULT_RANKING])
    assert canaries["auto_reason"].startswith((f"kept {DEFAULT_RANKING}", f"{chosen} found every canary kind"))
    assert all(kind in canaries["auto_reason"] for kind in CANARY_KINDS)
    # measured here: chosen ranking 0.94 on canaries, 0.96 on the injected swaps; random 0.51
    assert canaries["rankings"][canaries["chosen"]]["auroc"] >= canaries["rankings"]["random"]["auroc"] + 0.2
    true = result.summary["detection"][canaries["chosen"]]["auroc"]
    assert abs(canaries["rankings"][canaries["chosen"]]["auroc"] - true) < 0.15
    # with the estimated noise among the user's pairs taken out, the estimate rises towards the truth
    grade = canaries["rankings"][canaries["chosen"]]
    assert 0 < canaries["noise_rate_estimate"] < 0.5
    assert grade["auroc"] < grade["auroc_against_clean"] and abs(grade["auroc_against_clean"] - true) < 0.15
    assert 0 < canaries["flagged_precision_estimate"] <= 1
    assert result.scores["mismatch_estimate"].between(0, 1).all()
    # the console spells out how the one estimate splits by kind, easiest first
    by_kind = next(line for line in format_console_summary(result.summary, out).splitlines()
                   if line.startswith("by kind of canary"))
    aurocs = [float(part.split()[-1]) for part in by_kind.split(":")[0].removeprefix("by kind of canary").split(",")]
    assert all(kind in by_kind for kind in CANARY_KINDS) and aurocs == sorted(aurocs, reverse=True)


def test_reuse_reranks_with_the_learned_ranking_and_precision_flags_fewer_for_more(canary_run):
    data, out, first = canary_run
    loose = curate.flag(data, out, reuse=True, method="learned", precision=0.3, views=1, **FAST)
    strict = curate.flag(data, out, reuse=True, method="learned", precision=0.8, views=1, **FAST)
    assert loose.summary["canaries"]["chosen"] == "learned" and loose.summary["models_trained"] == 0
    # fitted without the pairs the default finds most suspect, and the console says how many
    left_out = loose.summary["canaries"]["learned_left_out"]
    assert 0 < left_out <= 0.5 * len(loose.scores)
    console = format_console_summary(loose.summary, out)
    assert f"less the {left_out} the default finds most suspect" in console
    assert loose.summary["canaries"]["count"] == first.summary["canaries"]["count"]
    assert not loose.scores["key"].str.startswith(PREFIX).any()
    by_ranking = [int((run.scores["flagged"] & (run.scores["lint"] == "")).sum()) for run in (loose, strict)]
    assert by_ranking[0] > by_ranking[1]
    # the estimate leans low, so a high target may flag nothing; what it flags is estimated at the target or above
    strict_estimate = strict.summary["canaries"]["flagged_precision_estimate"]
    assert (by_ranking[1] == 0 and strict_estimate is None) or strict_estimate >= 0.8
    assert loose.summary["canaries"]["flagged_precision_estimate"] >= 0.3


def test_cross_fitting_never_scores_a_row_with_a_model_that_saw_it():
    class Recorder:
        """Scores 1 for a row it was fitted on, 0 otherwise."""

        def fit(self, features, labels):
            self.seen = {tuple(row) for row in features}

        def predict_proba(self, features):
            seen = np.array([tuple(row) in self.seen for row in features], dtype=float)
            return np.column_stack([1 - seen, seen])

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"align_f": rng.random(300), "csl": rng.random(300), "clipmem_raw": rng.random(300)})
    labels = np.zeros(300, dtype=bool)
    labels[:40] = True
    scores = trust.cross_fitted_scores(frame, labels, seed=0, make_model=Recorder)
    assert np.isfinite(scores).all() and (scores == 0).all()


def test_learned_ranking_counts_a_feature_in_the_reversed_direction():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"align_f": rng.normal(size=600), "csl": rng.normal(size=600),
                          "clipmem_raw": rng.normal(size=600)})
    labels = np.zeros(600, dtype=bool)
    labels[:60] = True
    frame.loc[labels, "align_f"] -= 2.0  # canaries: the trained-on model aligns them LESS, unlike the paper's story
    learned = trust.cross_fitted_scores(frame, labels, seed=0, features=trust.FEATURES)
    assert trust.grade_scores(learned, labels, seed=0)["auroc"] > 0.85
    assert trust.learned_weights(frame, labels, trust.FEATURES)["align_f"] < 0
    # a fixed ranking that expects high alignment to be suspect finds them below chance
    assert trust.grade_scores(frame["align_f"], labels, seed=0)["auroc"] < 0.2


def test_learned_from_canaries_uses_only_the_inputs_canaries_share_with_real_noise():
    """Canaries told apart by their trained-on alignment alone: a model fitted on them must not learn that (real
    mis-captioned pairs differ there the other way), while a model fitted on reviewed pairs may."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({name: rng.normal(size=500) for name in ("align_f", "clipmem_raw", "csl", "nbr_image")})
    labels = np.zeros(500, dtype=bool)
    labels[:50] = True
    frame.loc[labels, "align_f"] += 3.0
    assert set(trust.learned_weights(frame, labels)) == {"csl", "nbr_image"} <= set(trust.CANARY_FEATURES)
    assert trust.grade_scores(trust.cross_fitted_scores(frame, labels, seed=0), labels, seed=0)["auroc"] < 0.7
    assert trust.learned_weights(frame, labels, trust.FEATURES)["align_f"] > 1


def test_leaving_out_the_likely_mismatched_keeps_real_noise_from_teaching_the_learned_ranking():
    """The user's own mismatched pairs look like canaries on one feature (csl) and differ on another (nbr_image).
    Fitted as "not a canary" they teach the model to count nbr_image against, which buries them; left out (the
    default finds them by csl) they do not."""
    rng = np.random.default_rng(11)
    users, noisy, planted = 1500, 450, 60
    frame = pd.DataFrame({"csl": rng.normal(size=users + planted), "nbr_image": rng.normal(size=users + planted)})
    labels = np.r_[np.zeros(users, dtype=bool), np.ones(planted, dtype=bool)]
    truth = np.r_[np.ones(noisy, dtype=bool), np.zeros(users - noisy, dtype=bool)]
    frame.loc[np.flatnonzero(~labels)[truth], ["csl", "nbr_image"]] += [2.0, 2.0]
    frame.loc[labels, "csl"] += 2.0
    default = frame["csl"].to_numpy()
    share = trust.noise_share(default[~labels], default[labels])
    assert 0.1 < share < 0.45  # the canaries see that many pairs rank like them
    left_out = trust.likely_mismatched(default, ~labels, share)
    assert left_out[labels].sum() == 0 and left_out[~labels][truth].mean() > 0.8

    def true_auroc(scores):
        return trust.grade_scores(scores[:users], truth, seed=0)["auroc"]

    plain = trust.cross_fitted_scores(frame, labels, seed=0)
    careful = trust.cross_fitted_scores(frame, labels, seed=0, left_out=left_out)
    # measured: 0.69 fitted against every user pair, 0.91 with the likely mismatched left out (four draws:
    # 0.69-0.75 against 0.86-0.92)
    assert true_auroc(careful) > true_auroc(plain) + 0.15
    assert trust.learned_weights(frame, labels, left_out=left_out)["nbr_image"] > \
        trust.learned_weights(frame, labels)["nbr_image"] + 0.5
    assert trust.likely_mismatched(default, ~labels, float("nan")) is None


def test_auto_never_chooses_clipmem_however_well_the_canaries_grade_it():
    grades = {name: {"auroc": auroc, "auroc_ci": [auroc - 0.05, auroc + 0.05]}
              for name, auroc in (("clipmem", 0.95), ("csl", 0.80), ("combined-neighbour", 0.85), ("random", 0.5))}
    assert trust.best_ranking(grades) == "combined-neighbour"


def grade(overall: float, by_kind: dict, unseen: dict | None = None) -> dict:
    found = {"auroc": overall, "auroc_ci": [overall - 0.05, overall + 0.05], "auroc_by_kind": by_kind}
    return {**found, "auroc_unseen_kind": unseen} if unseen is not None else found


def test_auto_keeps_the_default_unless_a_ranking_finds_every_kind_better():
    default = grade(0.80, {"generic": 0.70, "random-caption": 0.90})
    # better overall, worse on one kind: the user's noise may be like that kind
    lopsided = {"combined-neighbour": default, "csl": grade(0.85, {"generic": 0.95, "random-caption": 0.85})}
    assert trust.best_ranking(lopsided, "combined-neighbour") == "combined-neighbour"
    better = {**lopsided, "clipscore": grade(0.82, {"generic": 0.72, "random-caption": 0.91})}
    assert trust.best_ranking(better, "combined-neighbour") == "clipscore"
    # learned: judged on the kinds it was not fitted on, however well it grades on those it was
    fitted_well = {"combined-neighbour": default,
                   "learned": grade(0.95, {"generic": 0.95, "random-caption": 0.95}, {"generic": 0.6, "random-caption": 0.95})}
    assert trust.best_ranking(fitted_well, "combined-neighbour") == "combined-neighbour"
    fitted_well["learned"]["auroc_unseen_kind"]["generic"] = 0.75
    assert trust.best_ranking(fitted_well, "combined-neighbour") == "learned"
    # without a graded default: the best-graded ranking, as before
    assert trust.best_ranking({"csl": grade(0.7, {}), "clipscore": grade(0.8, {})}, "combined-neighbour") == "clipscore"


def test_a_kind_the_learned_model_never_saw_is_graded_as_unseen():
    """Canaries of one kind stand out by a feature no other kind shares: fitted on every kind the learned
    ranking finds them, fitted on the others it cannot."""
    rng = np.random.default_rng(3)
    users, per_kind = 600, 40
    frame = pd.DataFrame({name: rng.normal(size=users + 2 * per_kind) for name in ("csl", "nbr_image")})
    labels = np.r_[np.zeros(users, dtype=bool), np.ones(2 * per_kind, dtype=bool)]
    kinds = pd.Series([""] * users + ["generic"] * per_kind + ["random-caption"] * per_kind)
    frame.loc[kinds.eq("generic").to_numpy(), "csl"] += 3.0
    frame.loc[kinds.eq("random-caption").to_numpy(), "nbr_image"] += 3.0
    unseen = trust.transfer_by_kind(frame, labels, kinds, seed=0)
    seen = trust.cross_fitted_scores(frame, labels, seed=0)
    for kind in ("generic", "random-caption"):
        rows = ~labels | kinds.eq(kind).to_numpy()
        # measured: 0.82-0.86 seen, 0.49-0.58 unseen over four draws
        assert trust.grade_scores(seen[rows], labels[rows], seed=0)["auroc"] > 0.75
        assert unseen[kind] < 0.68
    assert trust.transfer_by_kind(frame, labels, pd.Series([""] * users + ["generic"] * 2 * per_kind), seed=0) == {}


def test_auto_picks_the_best_graded_ranking_and_says_when_it_cannot_grade():
    rng = np.random.default_rng(1)
    users, planted = 400, 40
    keys = [f"{i:05d}" for i in range(users)] + [f"{PREFIX}{i:06d}" for i in range(planted)]
    frame = pd.DataFrame({"key": keys, "caption": "x", "lint": "", "clipmem_raw": rng.random(users + planted),
                          "csl": np.r_[rng.random(users), 0.6 + rng.random(planted)],
                          "clipscore": np.r_[rng.random(users), 0.3 + rng.random(planted)]})
    frame["rank_csl"], frame["rank_clipscore"] = frame["csl"], frame["clipscore"]
    frame[f"rank_{DEFAULT_RANKING}"] = frame["clipmem_raw"]
    spec = pd.DataFrame({"key": keys[users:], "kind": "random-caption"})
    result = assess(frame.copy(), spec, "auto", seed=0)
    grades = result.summary["rankings"]
    assert grades["csl"]["auroc"] > grades["clipscore"]["auroc"]
    assert result.chosen in ("csl", "learned") and grades[result.chosen]["auroc"] >= grades["csl"]["auroc"]
    assert len(result.frame) == users
    few = assess(frame.iloc[: users + 5].copy(), spec.iloc[:5], "auto", seed=0)
    assert not few.summary["graded"] and "too few" in few.summary["warnings"][0]


def test_a_ranking_below_the_floor_is_said_not_silently_used():
    rng = np.random.default_rng(0)  # features with no signal: learned reached 0.49 [0.39, 0.62] here
    keys = [f"{i:05d}" for i in range(300)] + [f"{PREFIX}{i:06d}" for i in range(30)]
    frame = pd.DataFrame({"key": keys, "caption": "x", "lint": "", "clipmem_raw": rng.random(330),
                          "csl": rng.random(330)})
    frame["rank_csl"] = frame["csl"]
    spec = pd.DataFrame({"key": keys[300:], "kind": "generic"})
    result = assess(frame, spec, "csl", seed=0)
    assert any("little better than chance" in line for line in result.summary["warnings"])
    assert any("no better than random" in line for line in result.summary["warnings"])


def test_planting_takes_no_pair_and_keeps_each_canary_with_its_donor(make_synthetic):
    table = load_table(make_synthetic(n=300, inject=0.0, seed=4), progress=False)
    plan = kfold_plan(table.keys, folds=3, seed=0)
    spec = plant_canaries(table, plan.groups, plan.scored, 0.1, seed=0)
    assert len(spec) == 30 and spec["key"].is_unique and spec["image_key"].is_unique
    donors = spec[spec["caption_key"] != ""]
    assert (donors["caption_key"].map(plan.groups) == donors["image_key"].map(plan.groups)).all()
    own = dict(zip(table.keys, (c[0] for c in table.captions)))
    assert all(own[image] != caption for image, caption in zip(spec["image_key"], spec["caption"]))
    planned = with_canaries(plan, spec)
    assert planned.scored[: len(plan.scored)] == plan.scored  # every user pair scored as before
    for before, after in zip(plan.models, planned.models):
        assert after.train_keys[: len(before.train_keys)] == before.train_keys


@pytest.mark.parametrize("sparse", [False, True])
def test_nearest_donors_in_blocks_equal_one_source_at_a_time(sparse, monkeypatch):
    import scipy.sparse

    from curate import canaries

    rng = np.random.default_rng(0)
    # small whole numbers: every product is exact whatever the summation order, so ties are real ties, which
    # go to the earlier member (rows 0, 4, 8, ... are the same)
    features = rng.integers(-2, 3, size=(120, 6)).astype(np.float32)
    features[::4] = features[0]
    caption_ids = rng.integers(0, 40, 120)
    groups = {key: key % 3 for key in range(120)}
    members = canaries._members_by_group(list(range(120)), groups)
    sources = rng.choice(120, 30, replace=False)
    monkeypatch.setattr(canaries, "SIMILARITIES_AT_ONCE", 100)  # blocks of 2 sources per fold
    found = canaries._nearest_donors(scipy.sparse.csr_matrix(features) if sparse else features, sources,
                                     [groups[s] for s in sources], members, caption_ids)
    for source, donors in zip(sources, found):
        candidates = members[groups[source]]
        candidates = candidates[caption_ids[candidates] != caption_ids[source]]
        similarity = features[candidates] @ features[source]
        assert donors.tolist() == candidates[np.argsort(-similarity, kind="stable")[:canaries.NEAREST]].tolist()


@pytest.mark.parametrize("argv, message", [
    (["--canaries", "0", "--method", "auto"], "--canaries above 0"),
    (["--canaries", "0.5"], "between 0 (off) and"),
    (["--precision", "1.5"], "--precision"),
    (["--canaries", "0", "--precision", "0.9"], "--canaries above 0"),
])
def test_bad_canary_options_are_one_line_usage_errors(argv, message, capsys, make_synthetic):
    data = make_synthetic(n=300, inject=0.05, seed=0)
    capsys.readouterr()  # the build's own progress
    assert cli.main(["flag", "--data", str(data), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _write_decisions(path, rows):
    pd.DataFrame(rows, columns=["key", "decision", "decided_at", "caption"]).to_csv(path, index=False)
    return path


def test_labels_keep_reviewed_wrong_flagged_never_fine_and_flag_the_next_page(canary_run, tmp_path):
    data, out, first = canary_run
    scores = first.scores.sort_values("score", ascending=False)
    wrong = scores[scores["injected"]].head(7)
    fine = scores[~scores["injected"]].head(5)
    rows = [(k, "wrong caption", "2026-12-02T10:00:00.000Z", c) for k, c in zip(wrong["key"], wrong["caption"])]
    rows += [(k, "fine", "2026-12-02T10:01:00.000Z", c) for k, c in zip(fine["key"], fine["caption"])]
    labels = _write_decisions(tmp_path / "decisions.csv", rows)
    result = curate.flag(data, out, reuse=True, labels=labels, views=1, **FAST)
    table = result.scores.set_index("key")
    assert table.loc[wrong["key"], "flagged"].all() and not table.loc[fine["key"], "flagged"].any()
    assert (table.loc[wrong["key"], "reasons"] == "reviewed: wrong caption").all()
    review = result.summary["review"]
    assert review["wrong caption"] == 7 and review["fine"] == 5 and review["next_page"] > 0
    assert result.summary["canaries"]["chosen"] == "learned"
    assert not result.scores["key"].str.startswith(PREFIX).any()
    unreviewed = table[table["reviewed"] == ""]
    assert int(unreviewed["flagged"].sum()) == review["next_page"]


def test_a_reviewed_wrong_pattern_ranks_higher_among_unreviewed_pairs():
    """Canaries stand out by csl; the data's own noise by LOW align_f, which only the reviews show."""
    rng = np.random.default_rng(5)
    users, planted = 600, 40
    keys = [f"{i:05d}" for i in range(users)] + [f"{PREFIX}{i:06d}" for i in range(planted)]
    noisy = np.zeros(users + planted, dtype=bool)
    noisy[:60] = True
    frame = pd.DataFrame({"key": keys, "caption": "x", "lint": "", "clipmem_raw": rng.random(users + planted),
                          "csl": np.r_[rng.random(users), 1 + rng.random(planted)],
                          "align_f": np.where(noisy, rng.random(users + planted) - 1, rng.random(users + planted))})
    frame[f"rank_{DEFAULT_RANKING}"] = frame["csl"]
    spec = pd.DataFrame({"key": keys[users:], "kind": "random-caption"})
    decisions = pd.DataFrame({"key": keys[:20] + keys[100:110], "decision": ["wrong caption"] * 20 + ["fine"] * 10})
    truth = noisy[20:users]
    before = assess(frame.copy(), spec, "learned", seed=0).frame["rank_learned"].to_numpy()[20:]
    after = assess(frame.copy(), spec, "learned", seed=0, decisions=decisions).frame["rank_learned"].to_numpy()[20:]
    unreviewed = ~np.isin(np.arange(20, users), np.arange(100, 110))
    auroc = [trust.grade_scores(s[unreviewed], truth[unreviewed], seed=0)["auroc"] for s in (before, after)]
    # measured: 0.45 from the canaries alone, 0.70 with 20 reviews beside them, 0.99 from the 20 reviews alone
    assert auroc[1] > auroc[0] + 0.3


def test_labels_from_another_dataset_fail_in_one_line(canary_run, tmp_path, capsys):
    data, out, first = canary_run
    key = first.scores["key"].iloc[0]
    other = _write_decisions(tmp_path / "other.csv", [(key, "fine", "", "a caption from elsewhere")])
    unknown = _write_decisions(tmp_path / "unknown.csv", [("999999999", "fine", "", "x")])
    for path, message in ((other, "another caption"), (unknown, "not pairs of")):
        assert cli.main(["flag", "--data", str(data), "--out", str(out), "--reuse", "--labels", str(path),
                         "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert cli.main(["flag", "--data", str(data), "--out", str(out), "--labels", str(other), "--no-progress"]) == 2
    assert "--reuse" in capsys.readouterr().err


def test_the_noise_share_and_the_precision_estimate_track_a_known_mixture():
    rng = np.random.default_rng(2)
    users = np.r_[rng.normal(0, 1, 4500), rng.normal(2.5, 1, 500)]
    truth = np.r_[np.zeros(4500, dtype=bool), np.ones(500, dtype=bool)]
    canaries = rng.normal(2.5, 1, 100)  # ranked like the user's own mismatched pairs
    share = trust.noise_share(users, canaries)
    assert 0.06 <= share <= 0.13
    posterior = trust.mismatch_posterior(users, canaries, share)
    assert np.all(np.diff(posterior[np.argsort(users)]) >= -1e-12)  # never falls as the score rises
    top = np.argsort(-users)[:250]
    assert abs(posterior[top].mean() - truth[top].mean()) < 0.25  # 0.67-0.98 against 0.86-0.94 over six draws
    # canaries easier to find than the user's noise make the estimate low, not high
    assert trust.noise_share(users, rng.normal(4.0, 1, 100)) < share
    assert np.isnan(trust.noise_share(users, canaries[:5]))


def test_reviewing_the_top_pairs_leaves_the_noise_rate_estimate_as_it_was():
    """The noise share is a property of the whole data: with the most suspect pairs reviewed and taken out of
    it, the pairs above the canaries were gone and the estimate fell to zero (then --precision flagged nothing)."""
    rng = np.random.default_rng(4)
    users, planted = 2000, 80
    csl = np.r_[rng.normal(0, 1, 1800), rng.normal(2.5, 1, 200), rng.normal(2.5, 1, planted)]
    frame = pd.DataFrame({"key": [f"{i:04d}" for i in range(users)] + [f"{PREFIX}{i:06d}" for i in range(planted)],
                          "caption": "x", "lint": "", "clipmem_raw": rng.random(users + planted), "csl": csl,
                          "clipscore": rng.random(users + planted)})
    frame["rank_csl"], frame["rank_clipscore"] = frame["csl"], -frame["clipscore"]
    spec = pd.DataFrame({"key": frame["key"][users:], "kind": "random-caption"})
    before = assess(frame.copy(), spec, "csl", seed=0).summary["noise_rate_estimate"]
    top = frame["key"][:users].to_numpy()[np.argsort(-csl[:users])[:50]]
    reviewed = pd.DataFrame({"key": top, "decision": "wrong caption"})
    after = assess(frame.copy(), spec, "csl", seed=0, decisions=reviewed).summary["noise_rate_estimate"]
    assert 0.05 < before < 0.15 and after == before


def test_binned_grades_equal_sklearn_with_ties_and_weights_and_resample_like_drawing_pairs():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    checked = 0
    while checked < 100:
        rows = int(rng.integers(2, 60))
        scores = rng.integers(0, int(rng.integers(1, 8)), rows).astype(float)  # few levels: ties between classes
        labels, weights = rng.random(rows) < rng.random(), rng.integers(0, 3, rows).astype(float)
        if not weights[labels].sum() or not weights[~labels].sum():
            continue
        positive_bin, negative_bin, bins = trust.score_bins(scores, labels)
        auroc, ap = trust.binned_auroc_ap(np.bincount(positive_bin, weights[labels], bins)[None],
                                          np.bincount(negative_bin, weights[~labels], 2 * bins + 1)[None])
        assert auroc[0] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights))
        assert ap[0] == pytest.approx(average_precision_score(labels, scores, sample_weight=weights))
        checked += 1
    # drawing bin counts spreads the grades as drawing the pairs themselves does
    scores = np.r_[rng.normal(0, 1, 3000), rng.normal(1.2, 1, 150)]
    labels = np.arange(len(scores)) >= 3000
    binned = trust.bootstrap_auroc_ap(*trust.bin_sizes(scores, labels), np.random.default_rng(0), 400)
    counts = trust.stratified_bootstrap_counts(np.random.default_rng(1), np.flatnonzero(labels),
                                               np.flatnonzero(~labels), 400, len(scores))
    by_pair = trust.weighted_auroc_ap(scores, labels, counts)
    for binned_draws, pair_draws in zip(binned, by_pair):
        assert binned_draws.mean() == pytest.approx(pair_draws.mean(), abs=0.01)
        assert 0.75 < binned_draws.std() / pair_draws.std() < 1.33
