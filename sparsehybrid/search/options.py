"""The search contract: what a search takes, defined once.

:class:`SearchOptions` is the single definition of a search's options (names, defaults, bounds,
descriptions). ``HybridSearcher.search``, both service clients, the service's request bodies
(and so its OpenAPI schema), the CLI and the framework adapters all take or build one, so a new
option is added here and nowhere else. The Python API validates leniently (``numpy`` integers
are fine); the service's request bodies subclass these models with ``strict=True`` so JSON is
typed exactly (``"10"`` is not a ``top_k``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..fusion import FUSIONS
from ..types import SearchMode

#: Longest query accepted, in characters. Encoders truncate at their max length anyway; this
#: bounds the work a pathological query can cause.
MAX_QUERY_CHARS = 100_000
#: Every retriever a searcher can fuse, in the fixed order hybrid mode uses.
RETRIEVERS = ("sparse", "dense", "bm25")

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SearchOptions(BaseModel):
    """Everything a search takes besides its query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_k: int = Field(10, ge=1, description="How many documents to return.")
    mode: SearchMode = Field("hybrid", description="sparse, dense, bm25 or hybrid (every configured retriever).")
    candidates: int = Field(100, ge=1, description="Candidates per retriever before fusion.")
    rerank: bool = Field(False, description="Rescore the fused head with the cross-encoder.")
    rerank_top: int = Field(50, ge=1, description="How many fused documents the cross-encoder rescores.")
    filter: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"lang": "en"}.')
    explain: bool = Field(True, description="Per-hit evidence of each retriever and the matched tokens.")
    fusion: str | None = Field(
        None,
        description="rrf, minmax (alias weighted), zscore or dbsf (default: the collection's tuned fusion, else rrf).",
    )
    rrf_k: int | None = Field(None, ge=1, description="RRF's k (default: the collection's, else 60).")
    weights: dict[str, Weight] | None = Field(
        None, description='Per-retriever weights, e.g. {"dense": 2}; 0 leaves a retriever out.'
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, mode: object) -> object:
        if isinstance(mode, str) and mode not in (*RETRIEVERS, "hybrid"):
            raise ValueError(f"unknown mode {mode!r}; choose sparse, dense, bm25 or hybrid")
        return mode

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, fusion: str | None) -> str | None:
        if fusion is not None and fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {sorted(FUSIONS)}")
        return fusion

    @field_validator("weights")
    @classmethod
    def _known_retrievers(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(weights or {}) - set(RETRIEVERS))
        if unknown:
            raise ValueError(f"unknown retriever(s) in weights: {unknown}; known: {list(RETRIEVERS)}")
        return weights

    @classmethod
    def of(cls, options: SearchOptions | None = None, /, **overrides: Any) -> SearchOptions:
        """``options`` (default: the defaults) with ``overrides`` applied, validated; a bad value
        raises one-line ``ValueError`` naming the option."""
        fields = set(SearchOptions.model_fields)  # a request's query is not an option
        base = options.model_dump(exclude_unset=True, include=fields) if options is not None else {}
        try:
            return cls.model_validate({**base, **overrides})
        except ValidationError as exc:
            raise ValueError(one_line(exc)) from None

    def as_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments (what a client sends as JSON)."""
        return self.model_dump(exclude={"query", "queries"})


class SearchRequest(SearchOptions):
    """One query and its options: the body of ``POST /search``."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)


class BatchSearchRequest(SearchOptions):
    """Several queries with the same options: the body of ``POST /search/batch``."""

    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]]


def one_line(exc: ValidationError) -> str:
    """A validation error as one line: the first problem, with where it is."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def check_query(query: object) -> str:
    """The query, or a one-line ``ValueError`` saying what is wrong with it."""
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as exc:  # e.g. invalid UTF-8 bytes on a command line (surrogate-escaped)
        raise ValueError(f"query is not valid UTF-8 (at character {exc.start})") from None
    return query


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Per-retriever weights, validated as :class:`SearchOptions` does (a searcher's defaults)."""
    return dict(SearchOptions.of(weights=dict(weights or {})).weights or {})
