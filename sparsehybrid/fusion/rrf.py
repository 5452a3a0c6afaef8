"""Rank and score fusion as pure functions over ranked lists.

Each input is one retriever's ranking: a sequence of ``(id, score)`` pairs, best first. The
functions work the same for any backend, so fusion can always run client-side; that is also
what lets every hit say which retriever found it at which rank.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Ranking = Sequence[tuple[str, float]]


@dataclass
class FusedItem:
    id: str
    score: float
    #: retriever name -> 1-based rank in that retriever's list
    ranks: dict[str, int] = field(default_factory=dict)
    #: retriever name -> that retriever's raw score
    scores: dict[str, float] = field(default_factory=dict)


def _check_weights(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None) -> dict[str, float]:
    w = {name: 1.0 for name in rankings}
    if weights:
        unknown = set(weights) - set(rankings)
        if unknown:
            raise ValueError(f"weights given for retrievers that produced no ranking: {sorted(unknown)}")
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"weight for {name!r} must be >= 0, got {value}")
            w[name] = float(value)
    return w


def _collect(rankings: Mapping[str, Ranking]) -> dict[str, FusedItem]:
    items: dict[str, FusedItem] = {}
    for name, ranking in rankings.items():
        seen: set[str] = set()
        for rank, (doc_id, score) in enumerate(ranking, start=1):
            if doc_id in seen:
                raise ValueError(f"ranking {name!r} lists {doc_id!r} twice")
            seen.add(doc_id)
            item = items.setdefault(doc_id, FusedItem(doc_id, 0.0))
            item.ranks[name] = rank
            item.scores[name] = float(score)
    return items


def _ordered(items: dict[str, FusedItem], limit: int | None) -> list[FusedItem]:
    # Ties: better best-rank first, then id, so equal inputs always give the same order.
    out = sorted(items.values(), key=lambda it: (-it.score, min(it.ranks.values()), it.id))
    return out[:limit] if limit is not None else out


def reciprocal_rank_fusion(
    rankings: Mapping[str, Ranking],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """RRF (Cormack et al., 2009): score(d) = sum_r w_r / (k + rank_r(d)).

    ``k`` damps the advantage of top ranks (60 is the paper's and most engines' default).
    Only ranks matter, so retrievers with incomparable score scales fuse cleanly.
    """
    if k < 0:
        raise ValueError(f"RRF k must be >= 0, got {k}")
    w = _check_weights(rankings, weights)
    items = _collect(rankings)
    for item in items.values():
        item.score = sum(w[name] / (k + rank) for name, rank in item.ranks.items())
    return _ordered(items, limit)


def _minmax(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    return lo, (hi - lo) or 1.0


def weighted_score_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Convex combination of min-max normalised scores; a document missing from a list gets 0 there.

    Useful when one retriever's score magnitude carries information RRF throws away.
    """
    w = _check_weights(rankings, weights)
    items = _collect(rankings)
    norms = {name: _minmax([s for _, s in r]) for name, r in rankings.items() if r}
    for item in items.values():
        item.score = sum(w[n] * (s - norms[n][0]) / norms[n][1] for n, s in item.scores.items())
    return _ordered(items, limit)


def distribution_based_score_fusion(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """DBSF (as in Qdrant): scores normalised by mean ± 3 standard deviations, clipped, summed."""
    w = _check_weights(rankings, weights)
    items = _collect(rankings)
    bounds: dict[str, tuple[float, float]] = {}
    for name, ranking in rankings.items():
        scores = [s for _, s in ranking]
        if not scores:
            continue
        mu = statistics.fmean(scores)
        sd = statistics.pstdev(scores) if len(scores) > 1 else 0.0
        lo, hi = mu - 3 * sd, mu + 3 * sd
        bounds[name] = (lo, (hi - lo) or 1.0)
    for item in items.values():
        item.score = sum(w[n] * min(1.0, max(0.0, (s - bounds[n][0]) / bounds[n][1])) for n, s in item.scores.items())
    return _ordered(items, limit)


FUSIONS: dict[str, Callable[..., list[FusedItem]]] = {
    "rrf": reciprocal_rank_fusion,
    "weighted": weighted_score_fusion,
    "dbsf": distribution_based_score_fusion,
}


def fuse(
    method: str,
    rankings: Mapping[str, Ranking],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Dispatch by name: ``rrf`` (default everywhere), ``weighted`` or ``dbsf``."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; choose one of {sorted(FUSIONS)}")
    if method == "rrf":
        return reciprocal_rank_fusion(rankings, k=k, weights=weights, limit=limit)
    return FUSIONS[method](rankings, weights=weights, limit=limit)
