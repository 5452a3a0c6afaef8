"""The one protocol every backend implements, and the collection schema it persists.

Modelled on Haystack's document-store integrations: a single abstract interface, one shared
conformance test class (``tests/connectors/conformance.py``) that every backend's tests subclass.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fusion import reciprocal_rank_fusion
from ..types import Chunk, PointRecord, ScoredPoint, SparseVector
from .filters import Condition, check_fields, metadata_field_types, parse_filter

SCHEMA_VERSION = 1
#: The named vectors (and retrievers) every backend stores: learned sparse, dense, native BM25.
SPARSE, DENSE, BM25 = "sparse", "dense", "bm25"
#: :class:`StoreQuery`'s name for a :meth:`VectorStore.search_fused` request.
FUSED = "fused"


class StoreError(RuntimeError):
    """A store operation failed."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (down, refused, timed out after retries)."""


class StoreLockedError(StoreError):
    """Another process holds the store for writing."""


class EncoderMismatchError(StoreError):
    """The encoders given do not match the ones the collection was built with."""


@dataclass
class CollectionSchema:
    """What a collection was built with. Persisted by the store, checked on every open.

    A collection built with one sparse model cannot be searched with another: the token ids
    would mean different things. ``metadata_fields`` records every metadata field seen, so
    filters on unknown fields are refused instead of silently matching nothing.
    """

    sparse_model: str | None = None
    sparse_dim: int | None = None
    dense_model: str | None = None
    dense_dim: int | None = None
    bm25: bool = True
    bm25_language: str = "english"
    #: Average document length in words, used by BM25 length normalisation (estimated at creation).
    bm25_avg_len: float = 256.0
    metadata_fields: dict[str, str] = field(default_factory=dict)
    #: Whether some document was stored as several chunks (None: unknown, a collection from
    #: before this was recorded). Fusion inside the engine ranks chunks, not documents, so the
    #: query layer uses it only where every document is one chunk.
    multi_chunk: bool | None = False
    #: The fusion ``sparsehybrid tune`` chose for this collection (a FusionSetting as a dict);
    #: searches use it unless a query says otherwise. None: plain RRF.
    fusion: dict[str, Any] | None = None
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectionSchema:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("multi_chunk", None)
        return cls(**values)

    def check_compatible(self, wanted: CollectionSchema, *, writing: bool = False) -> None:
        """Raise :class:`EncoderMismatchError` if ``wanted`` encoders differ from the stored ones.

        An encoder left out of ``wanted`` (None) is fine for a searcher, which may use a subset;
        a writer must bring every encoder the collection has (its points need every vector).
        """
        problems = []
        for kind in ("sparse", "dense"):
            have_model, have_dim = getattr(self, f"{kind}_model"), getattr(self, f"{kind}_dim")
            want_model, want_dim = getattr(wanted, f"{kind}_model"), getattr(wanted, f"{kind}_dim")
            if want_model is None:
                if writing and have_model is not None:
                    problems.append(
                        f"the collection has {kind} vectors from {have_model}, but no {kind} encoder was given"
                    )
                continue
            if have_model is None:
                problems.append(f"the collection has no {kind} vectors, but a {kind} encoder ({want_model}) was given")
            elif have_model != want_model or (want_dim is not None and have_dim != want_dim):
                problems.append(
                    f"{kind} encoder mismatch: collection was built with {have_model} (dim {have_dim}), "
                    f"got {want_model} (dim {want_dim})"
                )
        if problems:
            raise EncoderMismatchError(
                "; ".join(problems) + ". Use the collection's models (sparsehybrid index uses them when no "
                "model option is given) or index into a new collection."
            )


@dataclass
class FusedQuery:
    """One hybrid query for :meth:`VectorStore.search_fused`, already validated.

    Empty inputs are None, so a backend fuses exactly the retrievers in :attr:`retrievers`.
    """

    sparse: SparseVector | None
    dense: list[float] | None
    text: str | None
    limit: int
    candidates: int
    k: int
    weights: dict[str, float]
    conditions: list[Condition]

    @property
    def retrievers(self) -> list[str]:
        """The retrievers with an input, in the fixed order sparse, dense, bm25."""
        given = ((SPARSE, self.sparse), (DENSE, self.dense), (BM25, self.text))
        return [name for name, value in given if value is not None]

    def weight_list(self, names: Sequence[str]) -> list[float]:
        return [float(self.weights.get(n, 1.0)) for n in names]


@dataclass(frozen=True)
class StoreQuery:
    """One retrieval of a :meth:`VectorStore.search_batch`: the arguments of one ``search_*`` call.

    ``retriever`` names the call: ``"sparse"`` (``sparse``, ``with_sparse``), ``"dense"``
    (``dense``), ``"bm25"`` (``text``) or ``"fused"`` (:meth:`VectorStore.search_fused` over any of
    the three, with ``candidates``, ``k`` and ``weights``). ``limit``, ``filter`` and ``fields``
    mean what they mean there (``fields`` is ignored for ``"fused"``, which reads whole payloads).
    """

    retriever: str
    limit: int
    sparse: SparseVector | None = None
    dense: Sequence[float] | None = None
    text: str | None = None
    filter: Mapping[str, Any] | None = None
    fields: Sequence[str] | None = None
    with_sparse: bool = False
    candidates: int = 100
    k: int = 60
    weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        needs = {SPARSE: self.sparse, DENSE: self.dense, BM25: self.text}
        if self.retriever == FUSED:
            return
        if self.retriever not in needs:
            raise ValueError(f"unknown retriever {self.retriever!r}; choose sparse, dense, bm25 or fused")
        if needs[self.retriever] is None:
            what = "text" if self.retriever == BM25 else f"a {self.retriever} vector"
            raise ValueError(f"a {self.retriever} query needs {what}")


def check_vectors(record: PointRecord, schema: CollectionSchema) -> None:
    """Refuse a record whose vectors do not fit the collection (a :class:`StoreError` naming it)."""
    where = f"record {record.chunk.doc_id!r} chunk {record.chunk.chunk}"
    if schema.sparse_model and record.sparse is None:
        raise StoreError(f"{where}: missing sparse vector")
    if schema.dense_dim and (record.dense is None or len(record.dense) != schema.dense_dim):
        raise StoreError(f"{where}: dense vector must have {schema.dense_dim} dims")


def record_from_stored(
    payload: Mapping[str, Any], sparse: SparseVector | None, dense: Sequence[float] | None, schema: CollectionSchema
) -> PointRecord:
    """A stored point (payload and vectors as a backend returns them) as the record that wrote it.

    A backend leaves an empty sparse vector out; it comes back empty (not missing) so the record
    passes :func:`check_vectors` in another store.
    """
    if schema.sparse_model and sparse is None:
        sparse = SparseVector([], [])
    chunk = Chunk(
        doc_id=str(payload["doc_id"]),
        chunk=int(payload.get("chunk", 0)),
        text=payload.get("text") or "",
        start=int(payload.get("start", 0)),
        end=int(payload.get("end", 0)),
        title=payload.get("title"),
        metadata=dict(payload.get("metadata") or {}),
        content_hash=payload.get("content_hash") or "",
        n_chunks=int(payload.get("n_chunks", 1)),
    )
    return PointRecord(chunk, sparse, list(dense) if dense is not None else None)


class VectorStore(abc.ABC):
    """A collection of chunks with sparse, dense and (where native) BM25 retrieval.

    Point ids come from :func:`sparsehybrid.types.point_id`, so upserts are idempotent.
    ``filter`` arguments take the dict language of :mod:`sparsehybrid.connectors.filters`.
    """

    #: Retrievers this backend can serve: a subset of {"sparse", "dense", "bm25"}.
    capabilities: frozenset[str] = frozenset({"sparse", "dense"})
    #: Whether :meth:`search_fused` runs fusion inside the backend.
    native_fusion: bool = False
    #: Whether ``_search_*`` take ``fields`` (the payload keys to read). The query layer then
    #: ranks candidates by id and ``doc_id`` alone and reads whole payloads for the shown hits only.
    partial_payloads: bool = False
    #: The URL of the search service that owns this store, where searches of it must go (a
    #: served embedded store admits no second process); None: search it in-process.
    served_by: str | None = None
    #: Serialises collection creation and schema updates (set by each backend's constructor).
    _lock: threading.RLock

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where the store lives, with any credentials removed (safe to log)."""

    @property
    @abc.abstractmethod
    def schema(self) -> CollectionSchema | None:
        """The persisted schema, or None if the collection does not exist yet."""

    def ensure_schema(self, wanted: CollectionSchema) -> CollectionSchema:
        """Create the collection for ``wanted``, or check an existing one against it.

        Subclasses set ``self._lock`` (a ``threading.RLock``): two threads never both create.
        """
        with self._lock:
            existing = self.schema
            if existing is not None:
                existing.check_compatible(wanted, writing=True)
                return existing
            return self._create_collection(CollectionSchema.from_dict(wanted.to_dict()))

    @abc.abstractmethod
    def _create_collection(self, schema: CollectionSchema) -> CollectionSchema:
        """Create the collection for ``schema`` (it does not exist yet) and return ``schema``."""

    @abc.abstractmethod
    def _save_schema(self, schema: CollectionSchema) -> None:
        """Persist an updated schema of the existing collection (called under ``self._lock``)."""

    def save_fusion(self, setting: Mapping[str, Any] | None) -> CollectionSchema:
        """Record the collection's default fusion (``None``: back to plain RRF)."""
        with self._lock:
            schema = self.schema
            if schema is None:
                raise StoreError(f"{self.url} holds no collection yet: run `sparsehybrid index` first")
            updated = CollectionSchema.from_dict({**schema.to_dict(), "fusion": dict(setting) if setting else None})
            self._save_schema(updated)
            return updated

    def close(self) -> None:
        """Release resources (file locks, connections)."""

    def flush(self) -> None:
        """Make every acknowledged write durable."""

    def bm25_doc_length(self, text: str) -> int:
        """Length of ``text`` as the backend's BM25 analyzer counts it (used to set avg_len).

        Backends whose BM25 keeps its own statistics need not override this estimate.
        """
        return len(text.split())

    def optimize(self) -> None:
        """Build or merge indexes after a bulk load (a no-op where the backend does it itself)."""

    def disk_size(self) -> int | None:
        """Bytes the collection takes on local disk; None where the data lives in a server."""
        return None

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, records: Sequence[PointRecord]) -> int:
        """Insert or replace points; returns how many were written."""
        if not records:
            return 0
        self._learn_metadata_fields(records)
        return self._upsert(records)

    @abc.abstractmethod
    def _upsert(self, records: Sequence[PointRecord]) -> int: ...

    @abc.abstractmethod
    def delete_points(self, point_ids: Sequence[str]) -> None:
        """Delete points by id (missing ids are ignored)."""

    @abc.abstractmethod
    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Delete every chunk of the given documents."""

    # -- reads -------------------------------------------------------------------------------
    @abc.abstractmethod
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of points (chunks), optionally matching a filter."""

    @abc.abstractmethod
    def get(self, point_ids: Sequence[str], with_sparse: bool = False) -> list[ScoredPoint]:
        """Fetch points by id (score 0); missing ids are skipped."""

    @abc.abstractmethod
    def iter_points(self, batch_size: int = 1000) -> Iterator[ScoredPoint]:
        """Every point's payload (no vectors), for manifests, syncing and exports."""

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        """Every point with its payload and encoded vectors, a batch at a time (``sparsehybrid copy``).

        The records are what :meth:`upsert` takes, so another store can be loaded without
        re-encoding. BM25 is not among the vectors: each backend derives it from the text.
        """
        raise StoreError(f"{type(self).__name__} cannot read its stored vectors back")
        yield []  # pragma: no cover  (makes this a generator)

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]:
        """The records of the given points with their vectors (missing ids skipped)."""
        raise StoreError(f"{type(self).__name__} cannot read its stored vectors back")

    def document_states(self) -> dict[str, tuple[str, int]]:
        """{doc_id: (content_hash, n_chunks)} of every stored document, read from chunk 0.

        What incremental indexing compares against: unchanged hashes are skipped, and a
        document that now has fewer chunks gets its surplus chunks deleted.
        """
        return {
            p.payload["doc_id"]: (p.payload.get("content_hash", ""), int(p.payload.get("n_chunks", 1)))
            for p in self.iter_points()
            if p.payload.get("chunk", 0) == 0
        }

    def search_sparse(
        self,
        vector: SparseVector,
        limit: int,
        filter: Mapping[str, Any] | None = None,
        with_sparse: bool = False,
        *,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        """Exact dot-product search over the sparse vectors.

        ``fields``: the payload keys to read (None: all); stores without ``partial_payloads``
        return whole payloads anyway.
        """
        return self._search_sparse(vector, limit, self._conditions(filter), with_sparse, **self._payload_keys(fields))

    def search_dense(
        self,
        vector: Sequence[float],
        limit: int,
        filter: Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        """Nearest neighbours by cosine similarity over the dense vectors (``fields`` as above)."""
        return self._search_dense(
            list(map(float, vector)), limit, self._conditions(filter), **self._payload_keys(fields)
        )

    def search_bm25(
        self, text: str, limit: int, filter: Mapping[str, Any] | None = None, *, fields: Sequence[str] | None = None
    ) -> list[ScoredPoint]:
        """Lexical BM25 search, computed by the backend itself (``fields`` as above)."""
        if "bm25" not in self.capabilities:
            raise StoreError(f"{type(self).__name__} has no native BM25")
        return self._search_bm25(text, limit, self._conditions(filter), **self._payload_keys(fields))

    def _payload_keys(self, fields: Sequence[str] | None) -> dict[str, Any]:
        return {"fields": tuple(fields)} if fields is not None and self.partial_payloads else {}

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
        """Reciprocal-rank fusion done by the backend in one request (only where ``native_fusion``).

        Scores are ``sum(w / (k + rank))`` with 1-based ranks, as :mod:`sparsehybrid.fusion`.
        """
        query = self._fused_query(sparse, dense, text, limit, candidates, k, weights, filter)
        return self._search_fused(query) if query is not None else []

    def _fused_query(
        self,
        sparse: SparseVector | None,
        dense: Sequence[float] | None,
        text: str | None,
        limit: int,
        candidates: int,
        k: int,
        weights: Mapping[str, float] | None,
        filter: Mapping[str, Any] | None,
    ) -> FusedQuery | None:
        """The validated :class:`FusedQuery` of a :meth:`search_fused` call; None when it finds nothing."""
        query = FusedQuery(
            sparse=sparse if sparse is not None and len(sparse) else None,
            dense=[float(x) for x in dense] if dense is not None else None,
            text=text if text and text.strip() else None,
            limit=int(limit),
            candidates=int(candidates),
            k=int(k),
            weights=dict(weights or {}),
            conditions=self._conditions(filter),
        )
        if self.schema is None or not query.retrievers:
            return None
        return query

    def search_batch(self, queries: Sequence[StoreQuery]) -> list[list[ScoredPoint]]:
        """Each query's results, in order, exactly as its own ``search_*`` call returns them.

        Backends with a batch request override this to send every query in one (Qdrant's
        ``query_batch``); this default runs them one after another, so every backend has it.
        """
        return [self.search_one(q) for q in queries]

    def _build_request(
        self,
        query: StoreQuery,
        sparse: Callable[[SparseVector, int, list[Condition], bool, Sequence[str] | None], Any],
        dense: Callable[[list[float], int, list[Condition], Sequence[str] | None], Any],
        bm25: Callable[[str, int, list[Condition], Sequence[str] | None], Any],
        fused: Callable[[FusedQuery], Any],
    ) -> Any:
        """What a backend's batch sends for ``query``: its arguments checked and converted exactly
        as the matching ``search_*`` call does them (filter conditions, payload fields, the
        validated :class:`FusedQuery`), handed to that backend's builder for the retriever. None
        where the ``search_*`` call would return nothing without asking (a fusion of nothing)."""
        if query.retriever == FUSED:
            fused_query = self._fused_query(
                query.sparse,
                query.dense,
                query.text,
                query.limit,
                query.candidates,
                query.k,
                query.weights,
                query.filter,
            )
            return fused(fused_query) if fused_query is not None else None
        conditions = self._conditions(query.filter)
        fields = self._payload_keys(query.fields).get("fields")
        if query.retriever == SPARSE:
            assert query.sparse is not None  # checked by StoreQuery
            return sparse(query.sparse, query.limit, conditions, query.with_sparse, fields)
        if query.retriever == DENSE:
            assert query.dense is not None
            return dense(list(map(float, query.dense)), query.limit, conditions, fields)
        assert query.text is not None
        if "bm25" not in self.capabilities:
            raise StoreError(f"{type(self).__name__} has no native BM25")
        return bm25(query.text, query.limit, conditions, fields)

    def search_one(self, query: StoreQuery) -> list[ScoredPoint]:
        """The ``search_*`` call that ``query`` describes."""
        if query.retriever == SPARSE:
            assert query.sparse is not None  # checked by StoreQuery
            return self.search_sparse(query.sparse, query.limit, query.filter, query.with_sparse, fields=query.fields)
        if query.retriever == DENSE:
            assert query.dense is not None
            return self.search_dense(query.dense, query.limit, query.filter, fields=query.fields)
        if query.retriever == BM25:
            assert query.text is not None
            return self.search_bm25(query.text, query.limit, query.filter, fields=query.fields)
        return self.search_fused(
            sparse=query.sparse,
            dense=query.dense,
            text=query.text,
            limit=query.limit,
            candidates=query.candidates,
            k=query.k,
            weights=query.weights,
            filter=query.filter,
        )

    def _search_fused(self, query: FusedQuery) -> list[ScoredPoint]:
        raise NotImplementedError(f"{type(self).__name__} has no native fusion; use sparsehybrid.fusion")

    def _client_fused(
        self,
        parts: dict[str, Any],
        limit: int,
        candidates: int,
        k: int,
        weights: dict[str, float],
        conditions: list[Condition],
    ) -> list[ScoredPoint]:
        """The same RRF run here, one search per retriever: where the server cannot fuse a query."""
        runs = {
            SPARSE: lambda v: self._search_sparse(v, candidates, conditions, False),
            DENSE: lambda v: self._search_dense(v, candidates, conditions),
            BM25: lambda v: self._search_bm25(v, candidates, conditions),
        }
        results = {name: runs[name](value) for name, value in parts.items()}
        points = {p.id: p for ps in results.values() for p in ps}
        fused = reciprocal_rank_fusion(
            {n: [(p.id, p.score) for p in ps] for n, ps in results.items()}, k=k, weights=weights, limit=limit
        )
        return [ScoredPoint(id=it.id, score=it.score, payload=points[it.id].payload) for it in fused]

    @abc.abstractmethod
    def _search_sparse(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool
    ) -> list[ScoredPoint]: ...

    @abc.abstractmethod
    def _search_dense(self, vector: list[float], limit: int, conditions: list[Condition]) -> list[ScoredPoint]: ...

    def _search_bm25(self, text: str, limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        raise StoreError(f"{type(self).__name__} has no native BM25")

    # -- shared helpers ------------------------------------------------------------------------
    def _conditions(self, filter: Mapping[str, Any] | None) -> list[Condition]:
        conditions = parse_filter(filter)
        schema = self.schema
        check_fields(conditions, schema.metadata_fields if schema is not None else {})
        return conditions

    def _learn_metadata_fields(self, records: Iterable[PointRecord]) -> None:
        schema = self.schema
        if schema is None:
            raise StoreError("collection does not exist yet: call ensure_schema() first")
        seen = dict(schema.metadata_fields)
        for r in records:
            for name, kind in metadata_field_types(r.chunk.metadata).items():
                seen.setdefault(name, kind)
        chunked = schema.multi_chunk is False and any(r.chunk.n_chunks > 1 for r in records)
        if chunked or seen != schema.metadata_fields:
            with self._lock:
                updated = CollectionSchema.from_dict({**schema.to_dict(), "metadata_fields": seen})
                if chunked:
                    updated.multi_chunk = True
                self._save_schema(updated)
