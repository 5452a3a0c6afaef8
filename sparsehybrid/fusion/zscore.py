"""Weighted sum of z-score normalised scores.

Montague and Aslam, "Relevance Score Normalization for Metasearch", CIKM 2001.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .common import FusedItem, Ranking, mean_and_deviation, normalised_sum


def _zscore(scores: Sequence[float]):
    mu, sd = mean_and_deviation(scores)
    return lambda s: (s - mu) / (sd or 1.0)


def zscore_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Scores standardised per retriever (mean 0, deviation 1) and summed; missing adds 0."""
    return normalised_sum(rankings, weights, limit, _zscore)
