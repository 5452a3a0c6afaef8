"""Fusion against hand-computed values."""

import pytest

from sparsehybrid.fusion import distribution_based_score_fusion, fuse, reciprocal_rank_fusion, weighted_score_fusion


def test_rrf_matches_hand_computed_scores():
    rankings = {
        "sparse": [("a", 9.0), ("b", 5.0), ("c", 1.0)],
        "dense": [("b", 0.9), ("d", 0.8), ("a", 0.1)],
    }
    fused = reciprocal_rank_fusion(rankings, k=60)
    got = {it.id: it.score for it in fused}
    assert got["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert got["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert got["c"] == pytest.approx(1 / 63)
    assert got["d"] == pytest.approx(1 / 62)
    # b (ranks 2 and 1) beats a (ranks 1 and 3): 1/62+1/61 > 1/61+1/63.
    assert [it.id for it in fused] == ["b", "a", "d", "c"]
    assert fused[0].ranks == {"sparse": 2, "dense": 1}
    assert fused[0].scores == {"sparse": 5.0, "dense": 0.9}


def test_rrf_k_and_weights():
    rankings = {"x": [("a", 1.0), ("b", 0.5)], "y": [("b", 1.0), ("a", 0.5)]}
    fused = reciprocal_rank_fusion(rankings, k=1, weights={"x": 3.0})
    got = {it.id: it.score for it in fused}
    assert got["a"] == pytest.approx(3 / 2 + 1 / 3)
    assert got["b"] == pytest.approx(3 / 3 + 1 / 2)
    assert fused[0].id == "a"


def test_rrf_ties_are_deterministic():
    # a and b tie exactly (rank 1 in one list, rank 2 in the other): best rank, then id decides.
    rankings = {"x": [("b", 1.0), ("a", 0.5)], "y": [("a", 1.0), ("b", 0.5)]}
    orders = {tuple(it.id for it in reciprocal_rank_fusion(dict(reversed(list(rankings.items()))))) for _ in range(5)}
    orders |= {tuple(it.id for it in reciprocal_rank_fusion(rankings)) for _ in range(5)}
    assert orders == {("a", "b")}


def test_rrf_limit_and_errors():
    assert len(reciprocal_rank_fusion({"x": [(str(i), 1.0) for i in range(10)]}, limit=3)) == 3
    with pytest.raises(ValueError, match="twice"):
        reciprocal_rank_fusion({"x": [("a", 1.0), ("a", 0.5)]})
    with pytest.raises(ValueError, match="no ranking"):
        reciprocal_rank_fusion({"x": [("a", 1.0)]}, weights={"y": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        reciprocal_rank_fusion({"x": [("a", 1.0)]}, weights={"x": -1.0})
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("nope", {})


def test_weighted_score_fusion_is_convex_combination_of_minmax_scores():
    rankings = {"x": [("a", 10.0), ("b", 5.0), ("c", 0.0)], "y": [("c", 1.0), ("a", 0.5), ("b", 0.0)]}
    fused = weighted_score_fusion(rankings, weights={"x": 0.7, "y": 0.3})
    got = {it.id: it.score for it in fused}
    assert got["a"] == pytest.approx(0.7 * 1.0 + 0.3 * 0.5)
    assert got["b"] == pytest.approx(0.7 * 0.5 + 0.3 * 0.0)
    assert got["c"] == pytest.approx(0.7 * 0.0 + 0.3 * 1.0)


def test_dbsf_normalises_by_three_sigma():
    rankings = {"x": [("a", 3.0), ("b", 1.0)]}
    # mean 2, pstdev 1 -> [-1, 5]: a -> 4/6, b -> 2/6
    got = {it.id: it.score for it in distribution_based_score_fusion(rankings)}
    assert got["a"] == pytest.approx(4 / 6)
    assert got["b"] == pytest.approx(2 / 6)
