"""Qdrant Edge: the Qdrant engine in-process, on local disk. The embedded default.

``qdrant-edge://PATH`` opens (or creates) a directory holding the shard and our schema file.
No server, no network; a write-ahead log makes acknowledged writes survive a crash, and the
shard's WAL lock refuses a second writing process.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..types import PointRecord, ScoredPoint, SparseVector
from .base import CollectionSchema, StoreError, StoreLockedError, VectorStore
from .filters import Condition

SCHEMA_FILE = "sparsehybrid.json"
SHARD_DIR = "shard"
SPARSE, DENSE, BM25 = "sparse", "dense", "bm25"


def _edge():
    import qdrant_edge

    return qdrant_edge


def _edge_value(value: Any) -> Any:
    """qdrant-edge-py 0.9 turns a Python bool into the int 1/0 (so bool payloads never match);
    numpy's bool is extracted as a real bool."""
    if isinstance(value, bool):
        import numpy as np

        return np.bool_(value)
    return value


def _homogeneous(values: tuple) -> bool:
    """True when values are all strings or all (non-bool) ints: what MatchAny accepts."""
    return all(isinstance(v, str) for v in values) or all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    )


def edge_filter(conditions: list[Condition], extra: list[Any] | None = None):
    """Translate parsed conditions to a Qdrant Edge Filter over the ``metadata`` payload."""
    q = _edge()
    must = list(extra or [])
    for c in conditions:
        key = f"metadata.{c.field}"
        if c.op == "eq":
            must.append(q.FieldCondition(key=key, match=q.MatchValue(value=_edge_value(c.value))))
        elif c.op == "in" and not _homogeneous(c.value):
            # MatchAny takes only all-str or all-int lists: match bools / mixed types one by one.
            must.append(
                q.Filter(should=[q.FieldCondition(key=key, match=q.MatchValue(value=_edge_value(v))) for v in c.value])
            )
        elif c.op == "in":
            must.append(q.FieldCondition(key=key, match=q.MatchAny(any=list(c.value))))
        else:
            must.append(q.FieldCondition(key=key, range=q.RangeFloat(**c.value)))
    return q.Filter(must=must) if must else None


def bm25_term_frequencies(text: str, language: str = "english") -> dict[int, int]:
    """Term frequencies of ``text`` exactly as Qdrant's BM25 analyzer sees them (token id -> tf).

    The embedder only returns saturated weights; with b=0 a weight is tf·(k+1)/(tf+k), which
    inverts to tf = w·k/(k+1-w). Used to measure real document lengths for BM25's avg_len.
    """
    k = 1.2
    vec = _tf_embedder(language, k).embed_document(text)
    return {int(i): max(1, round(w * k / (k + 1 - w))) for i, w in zip(vec.indices, vec.values)}


_TF_EMBEDDERS: dict[tuple[str, float], Any] = {}


def _tf_embedder(language: str, k: float):
    key = (language, k)
    if key not in _TF_EMBEDDERS:
        q = _edge()
        _TF_EMBEDDERS[key] = q.Bm25(q.Bm25Config(language=language, k=k, b=0.0))
    return _TF_EMBEDDERS[key]


class QdrantEdgeStore(VectorStore):
    """A collection stored by Qdrant Edge in ``path``.

    Vectors: ``sparse`` (learned sparse, plain dot product), ``dense`` (cosine) and ``bm25``
    (Qdrant's own BM25 embedder, with the IDF modifier so IDF stays current as documents change).
    """

    capabilities = frozenset({SPARSE, DENSE, BM25})
    native_fusion = True

    def __init__(self, path: str | os.PathLike[str], *, exact_dense: bool = False):
        self.path = Path(path)
        self.exact_dense = exact_dense
        self._shard = None
        self._schema: CollectionSchema | None = None
        self._bm25 = None
        self._lock = threading.RLock()
        schema_file = self.path / SCHEMA_FILE
        if schema_file.exists():
            self._schema = CollectionSchema.from_dict(json.loads(schema_file.read_text()))
            self._open_shard(create=False)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"qdrant-edge://{self.path}"

    @property
    def schema(self) -> CollectionSchema | None:
        return self._schema

    def ensure_schema(self, wanted: CollectionSchema) -> CollectionSchema:
        with self._lock:
            if self._schema is not None:
                self._schema.check_compatible(wanted)
                return self._schema
            self.path.mkdir(parents=True, exist_ok=True)
            self._schema = CollectionSchema.from_dict(wanted.to_dict())
            self._open_shard(create=True)
            self._write_schema()
            return self._schema

    def _write_schema(self) -> None:
        tmp = self.path / (SCHEMA_FILE + ".tmp")
        tmp.write_text(json.dumps(self._schema.to_dict(), indent=2, sort_keys=True))
        os.replace(tmp, self.path / SCHEMA_FILE)

    def _save_metadata_fields(self, fields: dict[str, str]) -> None:
        with self._lock:
            self._schema.metadata_fields = fields
            self._write_schema()

    def _open_shard(self, create: bool) -> None:
        q = _edge()
        schema = self._schema
        vectors = {}
        if schema.dense_dim:
            vectors[DENSE] = q.EdgeVectorParams(size=int(schema.dense_dim), distance=q.Distance.Cosine)
        sparse_vectors = {}
        if schema.sparse_model:
            sparse_vectors[SPARSE] = q.EdgeSparseVectorParams()
        if schema.bm25:
            sparse_vectors[BM25] = q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)
        config = q.EdgeConfig(vectors=vectors or None, sparse_vectors=sparse_vectors or None)
        shard_path = str(self.path / SHARD_DIR)
        try:
            if create and not (self.path / SHARD_DIR / "segments").exists():
                self._shard = q.EdgeShard.create(shard_path, config)
                self._shard.update(q.UpdateOperation.create_field_index("doc_id", q.PayloadSchemaType.Keyword))
            else:
                self._shard = q.EdgeShard.load(shard_path)
        except Exception as exc:  # the binding raises a bare Exception
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"{self.url} is open for writing in another process; Qdrant Edge allows one process "
                    "per index. Stop that process (or wait for it to finish) and try again."
                ) from None
            raise StoreError(f"cannot open Qdrant Edge shard at {shard_path}: {exc}") from exc
        if schema.bm25:
            self._bm25 = q.Bm25(q.Bm25Config(language=schema.bm25_language, avg_len=float(schema.bm25_avg_len)))

    @property
    def shard(self):
        if self._shard is None:
            raise StoreError(f"{self.url} holds no collection yet: index something first")
        return self._shard

    def flush(self) -> None:
        if self._shard is not None:
            self._shard.flush()

    def optimize(self) -> None:
        """Merge segments and build indexes after bulk writes (faster searches)."""
        if self._shard is not None:
            self._shard.optimize()

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None

    def bm25_doc_length(self, text: str) -> int:
        """Length of ``text`` in BM25 tokens (after stopwords), as Qdrant counts it."""
        language = self._schema.bm25_language if self._schema else "english"
        return sum(bm25_term_frequencies(text, language).values())

    def disk_size(self) -> int:
        """Bytes actually allocated on disk (the WAL and mmap files are sparse, so sizes overstate)."""
        return sum(f.stat().st_blocks * 512 for f in self.path.rglob("*") if f.is_file())

    # -- writes ------------------------------------------------------------------------------
    def _upsert(self, records: Sequence[PointRecord]) -> int:
        q = _edge()
        schema = self._schema
        points = []
        for r in records:
            vector: dict[str, Any] = {}
            if schema.sparse_model:
                if r.sparse is None:
                    raise StoreError(f"record {r.chunk.doc_id!r} chunk {r.chunk.chunk}: missing sparse vector")
                if len(r.sparse):
                    vector[SPARSE] = q.SparseVector(indices=list(r.sparse.indices), values=list(r.sparse.values))
            if schema.dense_dim:
                if r.dense is None or len(r.dense) != schema.dense_dim:
                    raise StoreError(
                        f"record {r.chunk.doc_id!r} chunk {r.chunk.chunk}: dense vector must have {schema.dense_dim} dims"
                    )
                vector[DENSE] = [float(x) for x in r.dense]
            if self._bm25 is not None:
                bm = self._bm25.embed_document(r.chunk.full_text)
                if len(bm.indices):
                    vector[BM25] = bm
            points.append(q.Point(r.id, vector, r.payload()))
        self.shard.update(q.UpdateOperation.upsert_points(points))
        return len(points)

    def delete_points(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self.shard.update(_edge().UpdateOperation.delete_points(list(point_ids)))

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        q = _edge()
        flt = q.Filter(must=[q.FieldCondition(key="doc_id", match=q.MatchAny(any=list(doc_ids)))])
        self.shard.update(q.UpdateOperation.delete_points_by_filter(flt))

    # -- reads -------------------------------------------------------------------------------
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        if self._shard is None:
            return 0
        return int(self.shard.count(_edge().CountRequest(exact=True, filter=edge_filter(self._conditions(filter)))))

    def get(self, point_ids: Sequence[str], with_sparse: bool = False) -> list[ScoredPoint]:
        if not point_ids or self._shard is None:
            return []
        records = self.shard.retrieve(
            point_ids=list(point_ids), with_payload=True, with_vector=[SPARSE] if with_sparse else False
        )
        return [self._scored(r, 0.0) for r in records]

    def iter_points(self, batch_size: int = 1000, fields: Sequence[str] | None = None) -> Iterator[ScoredPoint]:
        """Every point's payload; ``fields`` limits which payload keys are read."""
        if self._shard is None:
            return
        q = _edge()
        offset = None
        with_payload = list(fields) if fields else True
        while True:
            records, offset = self.shard.scroll(
                q.ScrollRequest(offset=offset, limit=batch_size, with_payload=with_payload, with_vector=False)
            )
            for r in records:
                yield self._scored(r, 0.0)
            if offset is None:
                break

    def document_states(self) -> dict[str, tuple[str, int]]:
        # Same as the base, reading only the four small payload keys instead of whole texts.
        return {
            p.payload["doc_id"]: (p.payload.get("content_hash", ""), int(p.payload.get("n_chunks", 1)))
            for p in self.iter_points(fields=("doc_id", "chunk", "n_chunks", "content_hash"))
            if p.payload.get("chunk", 0) == 0
        }

    @staticmethod
    def _scored(p, score: float) -> ScoredPoint:
        sparse = None
        vec = p.vector
        if isinstance(vec, dict) and SPARSE in vec:
            sparse = SparseVector(vec[SPARSE].indices, vec[SPARSE].values)
        return ScoredPoint(id=str(p.id), score=float(score), payload=dict(p.payload or {}), sparse=sparse)

    def _query(
        self, query, using: str, limit: int, conditions: list[Condition], with_sparse: bool = False, params=None
    ):
        q = _edge()
        request = q.QueryRequest(
            query=q.Query.Nearest(query, using=using),
            limit=int(limit),
            filter=edge_filter(conditions),
            with_payload=True,
            with_vector=[SPARSE] if with_sparse else False,
            params=params,
        )
        return [self._scored(p, p.score) for p in self.shard.query(request)]

    def _search_sparse(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool
    ) -> list[ScoredPoint]:
        if not len(vector) or self._shard is None:
            return []
        qv = _edge().SparseVector(indices=list(vector.indices), values=list(vector.values))
        return self._query(qv, SPARSE, limit, conditions, with_sparse)

    def _search_dense(self, vector: list[float], limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        if self._shard is None:
            return []
        params = _edge().SearchParams(exact=True) if self.exact_dense else None
        return self._query(vector, DENSE, limit, conditions, params=params)

    def _search_bm25(self, text: str, limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        if self._shard is None:
            return []
        qv = self._bm25.embed_query(text)
        if not len(qv.indices):
            return []
        return self._query(qv, BM25, limit, conditions)

    def search_fused(
        self,
        *,
        sparse: SparseVector | None = None,
        dense: Sequence[float] | None = None,
        text: str | None = None,
        limit: int = 10,
        candidates: int = 100,
        k: int = 60,
        weights: Mapping[str, float] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[ScoredPoint]:
        """RRF inside the engine: one prefetch per retriever, fused by ``Fusion.Rrf``."""
        q = _edge()
        flt = edge_filter(self._conditions(filter))
        prefetches, names = [], []
        if sparse is not None and len(sparse):
            prefetches.append(
                q.Prefetch(
                    limit=candidates,
                    query=q.Query.Nearest(
                        q.SparseVector(indices=list(sparse.indices), values=list(sparse.values)), using=SPARSE
                    ),
                    filter=flt,
                )
            )
            names.append(SPARSE)
        if dense is not None:
            prefetches.append(
                q.Prefetch(limit=candidates, query=q.Query.Nearest([float(x) for x in dense], using=DENSE), filter=flt)
            )
            names.append(DENSE)
        if text and self._bm25 is not None:
            bm = self._bm25.embed_query(text)
            if len(bm.indices):
                prefetches.append(q.Prefetch(limit=candidates, query=q.Query.Nearest(bm, using=BM25), filter=flt))
                names.append(BM25)
        if not prefetches:
            return []
        w = [float((weights or {}).get(n, 1.0)) for n in names]
        # Edge scores 0-based position p as 1/(k_e + p); ours is 1/(k + rank), rank 1-based: k_e = k + 1.
        request = q.QueryRequest(
            prefetches=prefetches,
            query=q.Fusion.Rrf(k=int(k) + 1, weights=w),
            limit=int(limit),
            filter=flt,
            with_payload=True,
        )
        return [self._scored(p, p.score) for p in self.shard.query(request)]
