"""Fusion settings, tuning with cross-validation, and significance tests (synthetic runs, no models)."""

import random

import pytest

from sparsehybrid.evaluation.fusion_tuning import (
    agreement_weights,
    best_setting,
    candidate_settings,
    choose_setting,
    cross_validated_run,
    folds_of,
    fused_run,
    score_settings,
    tune,
)
from sparsehybrid.evaluation.significance import compare_to_baseline, holm, paired_p_values
from sparsehybrid.fusion import FUSIONS, FusionSetting, fuse, zscore_fusion
from sparsehybrid.fusion.setting import ALIASES, METHODS


def test_setting_methods_are_the_fusions_the_searcher_knows():
    assert set(METHODS) | set(ALIASES) == set(FUSIONS)


def test_zscore_fusion_standardises_each_retriever():
    # a: scores 3, 2, 1 -> z = 1.22, 0, -1.22; b: 10, 0 -> z = 1, -1.
    fused = zscore_fusion({"a": [("x", 3.0), ("y", 2.0), ("z", 1.0)], "b": [("z", 10.0), ("x", 0.0)]})
    by_id = {it.id: it.score for it in fused}
    assert by_id["x"] == pytest.approx(1.2247449 - 1.0)
    assert by_id["y"] == pytest.approx(0.0)
    assert by_id["z"] == pytest.approx(-1.2247449 + 1.0)
    assert [it.id for it in fused] == ["x", "y", "z"]


def test_setting_round_trips_and_rejects_bad_values():
    s = FusionSetting("dbsf", 30, {"sparse": 0.5, "dense": 2})
    assert FusionSetting.from_dict(s.to_dict()) == s
    assert s.weight("bm25") == 1.0 and s.weight("dense") == 2.0
    assert FusionSetting().is_plain_rrf and not s.is_plain_rrf
    with pytest.raises(ValueError, match="unknown fusion 'borda'"):
        FusionSetting("borda")
    with pytest.raises(ValueError, match="weight for 'dense' must be a number >= 0"):
        FusionSetting("rrf", 60, {"dense": -1})
    with pytest.raises(ValueError, match="RRF k must be an integer >= 0"):
        FusionSetting("rrf", -5)
    with pytest.raises(ValueError, match=r"unknown fusion setting field\(s\): \['wieghts'\]"):
        FusionSetting.from_dict({"method": "rrf", "wieghts": {}})


def test_grid_starts_with_plain_rrf_holds_each_retriever_alone_once_and_no_duplicates():
    settings = candidate_settings(["sparse", "dense", "bm25"])
    assert settings[0] == FusionSetting("rrf", 60, {"sparse": 1.0, "dense": 1.0, "bm25": 1.0})
    alone = [s for s in settings if sum(w > 0 for w in s.weights.values()) == 1]
    assert sorted(next(r for r, w in s.weights.items() if w) for s in alone) == ["bm25", "dense", "sparse"]
    keys = [(s.method, s.k, tuple(sorted(s.weights.items()))) for s in settings]
    assert len(keys) == len(set(keys))
    assert {s.method for s in settings} == set(METHODS)


def _synthetic(n_queries=40, seed=1):
    """'good' ranks the relevant document near the top, 'noise' at random, 'fair' in between."""
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    runs = {"good": {}, "fair": {}, "noise": {}}
    qrels = {}
    for n in range(n_queries):
        q = f"q{n}"
        rel = rng.sample(docs, 3)
        qrels[q] = {d: 1 for d in rel}
        for name, top in (("good", 2), ("fair", 12), ("noise", 60)):
            order = rng.sample([d for d in docs if d not in rel], len(docs) - 3)
            for d in rel:
                order.insert(rng.randrange(0, top), d)
            runs[name][q] = [(d, 100.0 - i) for i, d in enumerate(order[:30])]
    return runs, qrels, list(qrels)


def test_tuning_learns_to_trust_the_better_retriever_and_beats_plain_rrf_out_of_fold():
    runs, qrels, queries = _synthetic()
    result = tune(runs, qrels, queries, folds=5, seed=0)
    cv = result.summary()["cv_ndcg@10"]
    assert cv["tuned"] >= cv["best_single"] - 1e-9
    assert cv["tuned"] > cv["plain_rrf"] + 0.05  # the noise retriever drags equal-weight RRF down
    assert result.chosen.weight("noise") < result.chosen.weight("good")
    assert {f["best_single_name"] for f in result.fold_reports} == {"good"}


def test_each_query_is_scored_with_a_setting_chosen_without_it():
    runs, qrels, queries = _synthetic(n_queries=25, seed=3)
    result = tune(runs, qrels, queries, folds=5, seed=7)
    settings = candidate_settings(list(runs))
    scores = score_settings(runs, qrels, queries, settings)
    for fold in folds_of(queries, 5, 7):
        train = [i for i in range(len(queries)) if i not in fold]
        expected = settings[best_setting(scores, train)]
        assert {result.per_query_setting[queries[i]] for i in fold} == {expected}
    # The cross-validated run is exactly those settings applied query by query.
    cv_run = cross_validated_run(runs, result, limit=10)
    q = queries[0]
    assert cv_run[q] == fused_run(runs, result.per_query_setting[q], [q], 10)[q]


def test_too_few_training_queries_keep_plain_rrf():
    scores = [[0.5] * 9, [0.9] * 9]
    assert choose_setting(scores, list(range(9))) == 0  # 9 queries: not enough to choose
    scores = [[0.5] * 12, [0.9] * 12]
    assert choose_setting(scores, list(range(12))) == 1
    assert choose_setting([[0.5] * 12, [0.5] * 12], list(range(12))) == 0  # ties go to plain RRF


def test_folds_partition_the_queries_and_too_few_queries_is_a_clear_error():
    folds = folds_of([f"q{i}" for i in range(11)], 3, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(11)) and {len(f) for f in folds} == {3, 4}
    with pytest.raises(ValueError, match="3 judged queries cannot make 5 folds"):
        folds_of(["a", "b", "c"], 5, seed=0)
    with pytest.raises(ValueError, match="at least two retrievers"):
        tune({"only": {"q": [("d", 1.0)]}}, {"q": {"d": 1}}, ["q"], folds=2)


def test_fused_run_matches_fuse_and_weight_zero_means_the_retriever_alone():
    runs, _, queries = _synthetic(n_queries=3)
    s = FusionSetting("rrf", 20, {"good": 2.0, "fair": 1.0, "noise": 0.5})
    q = queries[0]
    expected = fuse("rrf", {n: runs[n][q] for n in runs}, k=20, weights=dict(s.weights), limit=10)
    assert fused_run(runs, s, [q], 10)[q] == [(it.id, it.score) for it in expected]
    alone = FusionSetting("rrf", 60, {"good": 0.0, "fair": 1.0, "noise": 0.0})
    assert fused_run(runs, alone, [q], 10)[q] == runs["fair"][q][:10]


def test_agreement_weights_down_weight_a_retriever_that_agrees_with_nobody():
    runs, _, queries = _synthetic()
    w = agreement_weights(runs, queries)
    assert w["noise"] < w["good"] and max(w.values()) == 1.0


def test_paired_tests_tell_a_real_difference_from_noise():
    rng = random.Random(0)
    base = [rng.random() for _ in range(60)]
    better = [min(1.0, b + 0.1 + rng.gauss(0, 0.02)) for b in base]
    same = [b + rng.gauss(0, 0.05) for b in base]
    t_p, r_p = paired_p_values(better, base)
    assert t_p < 1e-6 and r_p < 0.001
    t_p, r_p = paired_p_values(same, base)
    assert t_p > 0.05 and r_p > 0.05
    assert paired_p_values(base, base) == (1.0, 1.0)


def test_holm_correction_is_step_down_and_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


def test_compare_to_baseline_marks_only_corrected_significant_differences():
    rng = random.Random(1)
    queries = [f"q{i}" for i in range(50)]
    base = {q: rng.random() * 0.5 for q in queries}
    per_query = {
        "best single": base,
        "much better": {q: v + 0.3 + rng.gauss(0, 0.05) for q, v in base.items()},
        "much worse": {q: v - 0.3 + rng.gauss(0, 0.05) for q, v in base.items()},
        "about the same": {q: v + rng.gauss(0, 0.05) for q, v in base.items()},
    }
    out = compare_to_baseline(per_query, "best single", queries)
    assert out["much better"].mark == "▲" and out["much worse"].mark == "▼"
    assert out["about the same"].mark == "" and not out["about the same"].significant
    assert out["about the same"].t_p_holm >= out["about the same"].t_p
