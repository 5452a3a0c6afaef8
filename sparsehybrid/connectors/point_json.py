"""JSON forms of point records, as compact as JSON allows (the vectors dominate), and back: the
wire format an index job writes through a search service in (a data format, so it lives here,
below both the job side and the service)."""

from __future__ import annotations

from typing import Any

from ..types import Chunk, PointRecord, SparseVector


def record_to_json(r: PointRecord) -> dict[str, Any]:
    c = r.chunk
    out: dict[str, Any] = {
        "doc_id": c.doc_id,
        "chunk": c.chunk,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "title": c.title,
        "metadata": c.metadata,
        "content_hash": c.content_hash,
        "n_chunks": c.n_chunks,
    }
    if r.sparse is not None:
        out["sparse"] = [list(r.sparse.indices), list(r.sparse.values)]
    if r.dense is not None:
        out["dense"] = [float(x) for x in r.dense]
    return out


def record_from_json(d: dict[str, Any]) -> PointRecord:
    """The record again; a malformed one raises ValueError/KeyError/TypeError (a 422)."""
    chunk = Chunk(
        doc_id=str(d["doc_id"]),
        chunk=int(d["chunk"]),
        text=str(d["text"]),
        start=int(d["start"]),
        end=int(d["end"]),
        title=d.get("title"),
        metadata=dict(d.get("metadata") or {}),
        content_hash=str(d.get("content_hash", "")),
        n_chunks=int(d.get("n_chunks", 1)),
    )
    sparse = SparseVector(*d["sparse"]) if d.get("sparse") is not None else None
    dense = [float(x) for x in d["dense"]] if d.get("dense") is not None else None
    return PointRecord(chunk, sparse, dense)
