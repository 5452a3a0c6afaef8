"""Weighted sum of z-score normalised scores.

Montague and Aslam, "Relevance Score Normalization for Metasearch", CIKM 2001.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from .common import FusedItem, Ranking, normalised_sum


def _zscore(scores: Sequence[float]):
    mu = statistics.fmean(scores)
    sd = (statistics.pstdev(scores) if len(scores) > 1 else 0.0) or 1.0
    return lambda s: (s - mu) / sd


def zscore_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Scores standardised per retriever (mean 0, deviation 1) and summed; missing adds 0."""
    return normalised_sum(rankings, weights, limit, _zscore)
