"""What every fusion method shares: the input and output types, weight checks and tie-breaking.

Each input is one retriever's ranking: a sequence of ``(id, score)`` pairs, best first. The
methods work the same for any backend, so fusion can always run client-side; that is also what
lets every hit say which retriever found it at which rank.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
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


def check_weights(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None) -> dict[str, float]:
    """Per-retriever weights, 1.0 where none is given; negative or unknown names are errors."""
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


def collect(rankings: Mapping[str, Ranking]) -> dict[str, FusedItem]:
    """Every document of every ranking, with its rank and raw score per retriever."""
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


def ordered(items: dict[str, FusedItem], limit: int | None) -> list[FusedItem]:
    """Best first. Ties: better best-rank first, then id, so equal inputs always give the same order."""
    out = sorted(items.values(), key=lambda it: (-it.score, min(it.ranks.values()), it.id))
    return out[:limit] if limit is not None else out


def mean_and_deviation(scores: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation of one retriever's scores (0 for a single score)."""
    return statistics.fmean(scores), statistics.pstdev(scores) if len(scores) > 1 else 0.0


def normalised_sum(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float] | None,
    limit: int | None,
    normaliser,
) -> list[FusedItem]:
    """Weighted sum of per-retriever normalised scores; a document missing from a list adds 0.

    ``normaliser(scores) -> f(score)`` builds each retriever's normalisation from its own list.
    """
    w = check_weights(rankings, weights)
    items = collect(rankings)
    norms = {name: normaliser([s for _, s in r]) for name, r in rankings.items() if r}
    for item in items.values():
        item.score = sum(w[n] * norms[n](s) for n, s in item.scores.items())
    return ordered(items, limit)
