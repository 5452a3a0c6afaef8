"""Request and response bodies of the search service: the Python API's arguments and its
:class:`~sparsehybrid.types.Hit` (with its explanation), as typed JSON for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SearchOptions(BaseModel):
    """Everything :meth:`HybridSearcher.search` takes besides the query (same names, same defaults)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = 10
    mode: str = Field("hybrid", description="sparse, dense, bm25 or hybrid")
    candidates: int = Field(100, description="Candidates per retriever before fusion.")
    rerank: bool = False
    rerank_top: int = 50
    filter: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"lang": "en"}.')
    explain: bool = True
    fusion: str | None = Field(
        None, description="rrf, weighted (min-max), zscore or dbsf (default: the collection's tuned fusion, else rrf)."
    )
    rrf_k: int | None = None
    weights: dict[str, float] | None = Field(None, description='Per-retriever weights, e.g. {"dense": 2}.')


class SearchRequest(SearchOptions):
    query: str


class BatchRequest(SearchOptions):
    queries: list[str]


class RetrieverEvidenceModel(BaseModel):
    retriever: str
    rank: int
    score: float


class ExplanationModel(BaseModel):
    retrievers: list[RetrieverEvidenceModel] = []
    fusion: str | None = None
    fused_score: float | None = None
    rerank_score: float | None = None
    sparse_tokens: list[tuple[str, float]] = []


class HitModel(BaseModel):
    doc_id: str
    score: float
    text: str
    title: str | None = None
    metadata: dict[str, Any] = {}
    chunk: int = 0
    span: tuple[int, int] | None = None
    explanation: ExplanationModel = ExplanationModel()


class SearchResponse(BaseModel):
    hits: list[HitModel]
    took_ms: float = Field(description="Time spent in the searcher (encode, retrieve, fuse, ...).")
    timing_ms: dict[str, float] = {}


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
