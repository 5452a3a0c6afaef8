"""Fusion of ranked lists from several retrievers (client-side, backend-independent).

One module per method, each citing its source; :func:`fuse` dispatches by name and
:class:`FusionSetting` is a method with its parameters, as recorded in a collection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .common import FusedItem, Ranking
from .dbsf import distribution_based_score_fusion
from .minmax import weighted_score_fusion
from .rrf import DEFAULT_RRF_K, reciprocal_rank_fusion
from .setting import ALIASES, METHODS, FusionSetting, canonical_method
from .zscore import zscore_fusion

FUSIONS: dict[str, Callable[..., list[FusedItem]]] = {
    "rrf": reciprocal_rank_fusion,
    "minmax": weighted_score_fusion,
    "weighted": weighted_score_fusion,  # the old name of minmax (fusion.setting.ALIASES)
    "zscore": zscore_fusion,
    "dbsf": distribution_based_score_fusion,
}


def fuse(
    method: str,
    rankings: Mapping[str, Ranking],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Dispatch by name: ``rrf`` (default everywhere), ``minmax`` (alias ``weighted``), ``zscore`` or ``dbsf``."""
    method = canonical_method(method)
    if method not in METHODS:
        raise ValueError(f"unknown fusion {method!r}; choose one of {sorted(METHODS)} (alias: weighted = minmax)")
    if method == "rrf":
        return reciprocal_rank_fusion(rankings, k=k, weights=weights, limit=limit)
    return FUSIONS[method](rankings, weights=weights, limit=limit)


__all__ = [
    "ALIASES",
    "DEFAULT_RRF_K",
    "FUSIONS",
    "METHODS",
    "FusedItem",
    "FusionSetting",
    "Ranking",
    "canonical_method",
    "distribution_based_score_fusion",
    "fuse",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
    "zscore_fusion",
]
