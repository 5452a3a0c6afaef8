"""``IndexSink``: what an index job writes into, and all it reads back while planning.

Every :class:`~.base.VectorStore` is one. So is :class:`~.service_store.ServiceStore`, the
write side of an embedded store that a running search service owns: it cannot search (searches
go to the service), so it is a sink, not a store, and the indexing loop asks for no more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..types import PointRecord
from .base import CollectionSchema


class IndexSink(Protocol):
    """The collection an index run plans against (schema, content hashes) and writes to."""

    @property
    def url(self) -> str: ...

    @property
    def schema(self) -> CollectionSchema | None: ...

    @property
    def served_by(self) -> str | None:
        """The search service that owns the collection (searches must go there); None if none."""
        ...

    def ensure_schema(self, wanted: CollectionSchema) -> CollectionSchema: ...

    def save_fusion(self, setting: Mapping[str, Any] | None) -> CollectionSchema: ...

    def document_states(self) -> dict[str, tuple[str, int]]: ...

    def bm25_doc_length(self, text: str) -> int: ...

    def count(self, filter: Mapping[str, Any] | None = None) -> int: ...

    def upsert(self, records: Sequence[PointRecord]) -> int: ...

    def delete_points(self, point_ids: Sequence[str]) -> None: ...

    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    def flush(self) -> None: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...
