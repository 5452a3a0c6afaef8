"""sparsehybrid: learned-sparse + dense hybrid search.

from sparsehybrid import HybridSearcher, open_store
searcher = HybridSearcher(open_store("qdrant-edge://./my-index"), sparse=SparseEncoder(), dense=DenseEncoder())
hits = searcher.search("query", top_k=10, mode="hybrid")
"""

from .connectors import CollectionSchema, VectorStore, open_store
from .encoders.dense import DenseEncoder
from .encoders.reranker import Reranker
from .encoders.sparse import SparseEncoder
from .ingestion.indexing import Indexer, IndexStats
from .search import HybridSearcher, open_searcher
from .types import Document, Hit, SparseVector

__version__ = "0.1.0"

__all__ = [
    "CollectionSchema",
    "DenseEncoder",
    "Document",
    "Hit",
    "HybridSearcher",
    "IndexStats",
    "Indexer",
    "Reranker",
    "SparseEncoder",
    "SparseVector",
    "VectorStore",
    "open_searcher",
    "open_store",
]
