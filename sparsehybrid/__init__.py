"""sparsehybrid: learned-sparse + dense hybrid search.

from sparsehybrid import HybridSearcher, open_store
searcher = HybridSearcher(open_store("qdrant-edge://./my-index"), sparse=SparseEncoder(), dense=DenseEncoder())
hits = searcher.search("query", top_k=10, mode="hybrid")

The names below are imported on first use, so that ``import sparsehybrid.client`` (or
``sparsehybrid.types``) loads no store engine, encoder or ingestion code it does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connectors import CollectionSchema, VectorStore, open_store
    from .encoders.dense import DenseEncoder
    from .encoders.reranker import Reranker
    from .encoders.sparse import SparseEncoder
    from .ingestion.indexing import Indexer, IndexStats
    from .search import HybridSearcher, Searcher, SearchOptions
    from .searchers import open_searcher
    from .types import Document, Hit, SparseVector

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "CollectionSchema": ".connectors",
    "VectorStore": ".connectors",
    "open_store": ".connectors",
    "DenseEncoder": ".encoders.dense",
    "Reranker": ".encoders.reranker",
    "SparseEncoder": ".encoders.sparse",
    "Indexer": ".ingestion.indexing",
    "IndexStats": ".ingestion.indexing",
    "HybridSearcher": ".search",
    "SearchOptions": ".search",
    "Searcher": ".search",
    "open_searcher": ".searchers",
    "Document": ".types",
    "Hit": ".types",
    "SparseVector": ".types",
}

__all__ = [
    "CollectionSchema",
    "DenseEncoder",
    "Document",
    "Hit",
    "HybridSearcher",
    "IndexStats",
    "Indexer",
    "Reranker",
    "SearchOptions",
    "Searcher",
    "SparseEncoder",
    "SparseVector",
    "VectorStore",
    "open_searcher",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsehybrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
