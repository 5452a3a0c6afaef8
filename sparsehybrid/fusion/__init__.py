"""Fusion of ranked lists from several retrievers (client-side, backend-independent)."""

from .rrf import (
    FUSIONS,
    FusedItem,
    distribution_based_score_fusion,
    fuse,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)

__all__ = [
    "FUSIONS",
    "FusedItem",
    "distribution_based_score_fusion",
    "fuse",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]
