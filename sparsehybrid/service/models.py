"""Request and response bodies of the search service, derived from the library's own types: the
search contract (:mod:`sparsehybrid.search.options`) and :class:`~sparsehybrid.types.Hit` with
its explanation, so the OpenAPI schema cannot drift from the Python API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import search
from ..types import Hit


class SearchRequest(search.SearchRequest):
    """``POST /search``: the search contract, typed strictly (JSON ``"10"`` is not a ``top_k``)."""

    model_config = ConfigDict(strict=True)


class BatchRequest(search.BatchSearchRequest):
    """``POST /search/batch``: several queries with the same options, typed strictly."""

    model_config = ConfigDict(strict=True)


class SearchResponse(BaseModel):
    hits: list[Hit]
    took_ms: float = Field(description="Time spent in the searcher (encode, retrieve, fuse, ...).")
    timing_ms: dict[str, float] = Field(
        default_factory=dict, description="Milliseconds per stage (SearchTiming.to_ms: encode, retrieve_<name>, ...)."
    )

    @classmethod
    def of(cls, results: search.SearchResults) -> SearchResponse:
        timing = results.timing
        return cls(hits=list(results), took_ms=timing.total * 1000, timing_ms=timing.to_ms())


class BatchResponse(BaseModel):
    results: list[SearchResponse]


class ErrorResponse(BaseModel):
    error: str = Field(description="The exception's class, e.g. FilterError.")
    kind: str = Field(description="Its family: ValueError, EncoderMismatchError, StoreLockedError or StoreError.")
    detail: str = Field(description="One line, the same as the CLI prints.")


class IdsRequest(BaseModel):
    ids: list[str]


class UpsertRequest(BaseModel):
    records: list[dict[str, Any]]


class CountRequest(BaseModel):
    filter: dict[str, Any] | None = None
