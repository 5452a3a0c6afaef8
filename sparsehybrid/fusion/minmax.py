"""Weighted sum of min-max normalised scores (CombSUM over normalised scores).

Fox and Shaw, "Combination of Multiple Searches", TREC-2, 1994; normalisation as in Lee,
"Analyses of Multiple Evidence Combination", SIGIR 1997.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .common import FusedItem, Ranking, normalised_sum


def _minmax(scores: Sequence[float]):
    lo, hi = min(scores), max(scores)
    span = (hi - lo) or 1.0
    return lambda s: (s - lo) / span


def weighted_score_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Convex combination of min-max normalised scores; a document missing from a list gets 0 there.

    Useful when one retriever's score magnitude carries information RRF throws away.
    """
    return normalised_sum(rankings, weights, limit, _minmax)
