"""Typed plans for :meth:`VectorStore.search_batch`: what each query of a batch becomes.

A backend with a batch request (Qdrant Edge ``query_batch``, the Qdrant server's
``/points/query/batch``, OpenSearch/Elasticsearch ``_msearch``) builds each query's request
exactly as its ``search_*`` call would (:class:`RequestBuilder`, through
``VectorStore._build_request``), sends the batched ones in one request and answers the others as
the plan says. :func:`run_batch` is that loop, once for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ..types import ScoredPoint, SparseVector

if TYPE_CHECKING:
    from .base import FusedQuery, StoreQuery
    from .filters import Condition

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
A = TypeVar("A")


class RequestBuilder(Protocol[R_co]):
    """A backend's request for each kind of retrieval, from arguments already checked and
    converted as the ``search_*`` calls do; None where that call would return nothing."""

    def sparse(
        self,
        vector: SparseVector,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool,
        fields: Sequence[str] | None,
    ) -> R_co | None: ...

    def dense(
        self, vector: list[float], limit: int, conditions: list[Condition], fields: Sequence[str] | None
    ) -> R_co | None: ...

    def bm25(self, text: str, limit: int, conditions: list[Condition], fields: Sequence[str] | None) -> R_co | None: ...

    def fused(self, query: FusedQuery) -> R_co | None: ...


@dataclass(frozen=True)
class Batched(Generic[R]):
    """Sent in the backend's one batch request."""

    request: R


@dataclass(frozen=True)
class OnItsOwn:
    """Answered by its own ``search_*`` call (a fused query the batch request cannot carry)."""


@dataclass(frozen=True)
class Empty:
    """Answered with nothing, as its ``search_*`` call would answer without asking."""


Step = Batched[R] | OnItsOwn | Empty


def batched_or_empty(request: R | None) -> Batched[R] | Empty:
    return Batched(request) if request is not None else Empty()


def run_batch(
    queries: Sequence[StoreQuery],
    plan: Sequence[Step[R]],
    send: Callable[[list[R]], Iterable[A]],
    read: Callable[[R, A], list[ScoredPoint]],
    on_its_own: Callable[[StoreQuery], list[ScoredPoint]],
) -> list[list[ScoredPoint]]:
    """Each query's results in order: the batched requests in one ``send`` (skipped when there
    are none), each answer read with its request; the others answered as their step says."""
    requests = [step.request for step in plan if isinstance(step, Batched)]
    answers = iter(send(requests) if requests else [])
    results: list[list[ScoredPoint]] = []
    for query, step in zip(queries, plan, strict=True):
        if isinstance(step, Batched):
            results.append(read(step.request, next(answers)))
        elif isinstance(step, OnItsOwn):
            results.append(on_its_own(query))
        else:
            results.append([])
    return results
