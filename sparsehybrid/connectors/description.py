"""What a collection holds, as data: what ``sparsehybrid info`` prints and the service's ``/info``
starts from (here, below both, so the service need not import the CLI)."""

from __future__ import annotations

from typing import Any

from .base import VectorStore


def describe_open_store(st: VectorStore) -> dict[str, Any]:
    """Counts, models, dimensions, BM25, metadata fields, recorded fusion and disk size of ``st``."""
    schema = st.schema
    if schema is None:
        raise ValueError(f"{st.url} holds no collection yet")
    return {
        "store": st.url,
        "documents": len(st.document_states()),
        "points": st.count(),
        "sparse_model": schema.sparse_model,
        "sparse_vocab": schema.sparse_dim,
        "dense_model": schema.dense_model,
        "dense_dim": schema.dense_dim,
        "bm25": {"language": schema.bm25_language, "avg_len": schema.bm25_avg_len} if schema.bm25 else None,
        "metadata_fields": dict(sorted(schema.metadata_fields.items())),
        "fusion": schema.fusion,
        "disk_bytes": st.disk_size(),
    }
