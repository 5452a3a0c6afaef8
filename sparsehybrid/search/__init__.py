"""The query layer: the search contract (:class:`SearchOptions`, :class:`Searcher`) and the
in-process :class:`HybridSearcher`."""

from .options import (
    MAX_QUERY_CHARS,
    RETRIEVERS,
    BatchSearchRequest,
    SearchOptions,
    SearchRequest,
    check_query,
    check_weights,
)
from .protocol import AsyncSearcher, Searcher
from .results import SearchResults, SearchTiming
from .searcher import CANDIDATE_FIELDS, Candidate, HybridSearcher, collapse_to_documents, searcher_for_store

__all__ = [
    "CANDIDATE_FIELDS",
    "MAX_QUERY_CHARS",
    "RETRIEVERS",
    "AsyncSearcher",
    "BatchSearchRequest",
    "Candidate",
    "HybridSearcher",
    "SearchOptions",
    "SearchRequest",
    "SearchResults",
    "SearchTiming",
    "Searcher",
    "check_query",
    "check_weights",
    "collapse_to_documents",
    "searcher_for_store",
]
