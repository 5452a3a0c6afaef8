"""Vector-store connectors behind one protocol (:class:`VectorStore`), opened by URL."""

from .base import (
    CollectionSchema,
    EncoderMismatchError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreQuery,
    StoreUnavailableError,
    VectorStore,
)
from .filters import FilterError, parse_filter
from .registry import open_index_sink, open_store, register_store, registered_schemes, served_by
from .sink import IndexSink

__all__ = [
    "CollectionSchema",
    "EncoderMismatchError",
    "FilterError",
    "IndexSink",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreQuery",
    "StoreUnavailableError",
    "VectorStore",
    "open_index_sink",
    "open_store",
    "parse_filter",
    "register_store",
    "registered_schemes",
    "served_by",
]
