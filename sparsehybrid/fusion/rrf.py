"""Reciprocal rank fusion.

Cormack, Clarke and Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank
Learning Methods", SIGIR 2009.
"""

from __future__ import annotations

from collections.abc import Mapping

from .common import FusedItem, Ranking, check_weights, collect, ordered

#: The paper's k, and most engines' default.
DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Mapping[str, Ranking],
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """score(d) = sum_r w_r / (k + rank_r(d)).

    ``k`` damps the advantage of top ranks. Only ranks matter, so retrievers with incomparable
    score scales fuse cleanly.
    """
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    w = check_weights(rankings, weights)
    items = collect(rankings)
    for item in items.values():
        item.score = sum(w[name] / (k + rank) for name, rank in item.ranks.items())
    return ordered(items, limit)
