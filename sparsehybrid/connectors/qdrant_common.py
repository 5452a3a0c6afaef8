"""What the two Qdrant backends share: filters, point vectors, scored points, fusion inputs.

Qdrant Edge (``qdrant_edge`` bindings) and qdrant-client (``qdrant_client.models``) expose the
same concepts under the same class names (``Filter``, ``FieldCondition``, ``MatchValue``,
``MatchAny``, ``SparseVector``), so each function takes the namespace to build with and the few
classes that differ. The layouts stay identical by construction: one place decides them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..types import PointRecord, ScoredPoint, SparseVector
from .base import BM25, DENSE, SPARSE, CollectionSchema, FusedQuery, check_vectors, record_from_stored
from .filters import Condition


def homogeneous(values: tuple) -> bool:
    """True when values are all strings or all (non-bool) ints: what ``MatchAny`` accepts."""
    return all(isinstance(v, str) for v in values) or all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    )


def metadata_filter(
    ns: Any, conditions: list[Condition], range_type: Any, value: Callable[[Any], Any] = lambda v: v
) -> Any:
    """Translate parsed conditions to a Qdrant ``Filter`` over the ``metadata`` payload.

    ``ns`` is the module with the filter classes, ``range_type`` its float-range class and
    ``value`` adapts a scalar for the binding (Edge needs numpy bools).
    """
    must: list[Any] = []
    for c in conditions:
        key = f"metadata.{c.field}"
        if c.op == "eq":
            must.append(ns.FieldCondition(key=key, match=ns.MatchValue(value=value(c.value))))
        elif c.op == "in" and not homogeneous(c.value):
            # MatchAny takes only all-str or all-int lists: match bools / mixed types one by one.
            must.append(
                ns.Filter(should=[ns.FieldCondition(key=key, match=ns.MatchValue(value=value(v))) for v in c.value])
            )
        elif c.op == "in":
            must.append(ns.FieldCondition(key=key, match=ns.MatchAny(any=list(c.value))))
        else:
            must.append(ns.FieldCondition(key=key, range=range_type(**c.value)))
    return ns.Filter(must=must) if must else None


def doc_id_filter(ns: Any, doc_ids: Sequence[str]) -> Any:
    """Every chunk of the given documents (for deleting whole documents)."""
    return ns.Filter(must=[ns.FieldCondition(key="doc_id", match=ns.MatchAny(any=list(doc_ids)))])


def point_vectors(record: PointRecord, schema: CollectionSchema, ns: Any, bm25: Any | None) -> dict[str, Any]:
    """The named vectors of one point; an empty sparse or BM25 vector is left out (Qdrant refuses it)."""
    check_vectors(record, schema)
    vector: dict[str, Any] = {}
    if schema.sparse_model and record.sparse is not None and len(record.sparse):
        vector[SPARSE] = ns.SparseVector(indices=list(record.sparse.indices), values=list(record.sparse.values))
    if schema.dense_dim and record.dense is not None:
        vector[DENSE] = [float(x) for x in record.dense]
    if bm25 is not None:
        bm = bm25.embed_document(record.chunk.full_text)
        if len(bm.indices):
            vector[BM25] = ns.SparseVector(indices=list(bm.indices), values=list(bm.values))
    return vector


def scored_point(p: Any, score: float) -> ScoredPoint:
    """A Qdrant record or scored point (either binding) as our :class:`ScoredPoint`."""
    vec = getattr(p, "vector", None)
    sparse = SparseVector(vec[SPARSE].indices, vec[SPARSE].values) if isinstance(vec, dict) and SPARSE in vec else None
    return ScoredPoint(id=str(p.id), score=float(score), payload=dict(p.payload or {}), sparse=sparse)


#: The vectors ``sparsehybrid copy`` reads back (BM25 is derived from the text by each backend).
ENCODED_VECTORS = [SPARSE, DENSE]


def encoded_vectors(schema: CollectionSchema) -> list[str] | bool:
    """The :data:`ENCODED_VECTORS` this collection has (asking the engine for a vector the
    collection lacks is an error: a collection built without a dense encoder has none); False
    when it has neither (BM25 only)."""
    names = [name for name, has in ((SPARSE, schema.sparse_model), (DENSE, schema.dense_dim)) if has]
    return names or False


def stored_record(p: Any, schema: CollectionSchema) -> PointRecord:
    """A Qdrant record read with :data:`ENCODED_VECTORS` (either binding) as the record that wrote it."""
    vec = p.vector if isinstance(getattr(p, "vector", None), dict) else {}
    sparse = engine_sparse(vec[SPARSE].indices, vec[SPARSE].values) if SPARSE in vec else None
    return record_from_stored(p.payload or {}, sparse, vec.get(DENSE), schema)


def engine_sparse(indices: Sequence[int], values: Sequence[float]) -> SparseVector:
    """A sparse vector the engine stored (it refused duplicate indices and non-finite weights when
    writing), built without checking it again: a quarter of a copy's time went to that check."""
    vector = object.__new__(SparseVector)
    object.__setattr__(vector, "indices", tuple(indices))
    object.__setattr__(vector, "values", tuple(values))
    return vector


def fusion_inputs(query: FusedQuery, ns: Any, bm25: Any | None) -> list[tuple[str, Any]]:
    """(vector name, query vector) per retriever to prefetch; BM25 only where the collection has it."""
    inputs: list[tuple[str, Any]] = []
    if query.sparse is not None:
        inputs.append((SPARSE, ns.SparseVector(indices=list(query.sparse.indices), values=list(query.sparse.values))))
    if query.dense is not None:
        inputs.append((DENSE, query.dense))
    if query.text is not None and bm25 is not None:
        bm = bm25.embed_query(query.text)
        if len(bm.indices):
            inputs.append((BM25, ns.SparseVector(indices=list(bm.indices), values=list(bm.values))))
    return inputs


def qdrant_rrf_k(k: int) -> int:
    """Qdrant scores 0-based position ``p`` as ``1 / (k_q + p)``; ours is ``1 / (k + rank)`` with
    1-based rank, so ``k_q = k + 1`` gives identical fused rankings."""
    return int(k) + 1
