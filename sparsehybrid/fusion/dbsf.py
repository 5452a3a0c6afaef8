"""Distribution-based score fusion, as Qdrant implements it.

Mazzeschi, "Distribution-Based Score Fusion (DBSF), a new approach to Vector Search Ranking", 2023;
Qdrant's ``Fusion.DBSF``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .common import FusedItem, Ranking, mean_and_deviation, normalised_sum


def _three_sigma(scores: Sequence[float]):
    mu, sd = mean_and_deviation(scores)
    lo, hi = mu - 3 * sd, mu + 3 * sd
    span = (hi - lo) or 1.0
    return lambda s: min(1.0, max(0.0, (s - lo) / span))


def distribution_based_score_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Scores normalised by mean ± 3 standard deviations, clipped to [0, 1], summed."""
    return normalised_sum(rankings, weights, limit, _three_sigma)
