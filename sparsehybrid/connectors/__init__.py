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
from .registry import open_store, register_store, registered_schemes

__all__ = [
    "CollectionSchema",
    "EncoderMismatchError",
    "FilterError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreQuery",
    "StoreUnavailableError",
    "VectorStore",
    "open_store",
    "parse_filter",
    "register_store",
    "registered_schemes",
]
