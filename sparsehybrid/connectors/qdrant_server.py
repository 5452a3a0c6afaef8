"""Qdrant server or cloud via ``qdrant-client``, and qdrant-client's local mode.

URLs::

    qdrant://HOST[:6333][/COLLECTION][?options]     plain HTTP
    qdrants://HOST[:6333][/COLLECTION][?options]    TLS (Qdrant Cloud)
    qdrant-local://PATH[?collection=NAME]           qdrant-client local mode (QdrantClient(path=...))

Local mode is qdrant-client's pure-Python engine: exact search, no payload indexes, and every
point is committed to SQLite one by one (slow on real disks); use it for tests and small data.

The API key comes from ``QDRANT_API_KEY`` (never from the URL, never printed). Options are those
of :mod:`sparsehybrid.connectors.connection` plus ``grpc=true`` (use the gRPC port 6334).

Layout: named vectors ``sparse`` (learned sparse, plain dot product), ``dense`` (cosine) and
``bm25`` (sparse, ``Modifier.IDF``), the latter fed by the same Qdrant BM25 embedder the Edge
store uses (``qdrant_edge.Bm25``), so the server computes IDF over token ids that mean the same
thing everywhere. The :class:`CollectionSchema` is stored in the collection's own metadata
(``metadata["sparsehybrid"]``, Qdrant >= 1.16): no reserved point that searches would have to
skip. Hybrid search runs in the server with the Query API: one prefetch per retriever fused by RRF.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from ..types import PointRecord, ScoredPoint, SparseVector
from .base import (
    BM25,
    DENSE,
    SPARSE,
    CollectionSchema,
    FusedQuery,
    StoreError,
    StoreLockedError,
    StoreQuery,
)
from .batch_plan import OnItsOwn, Step, batched_or_empty, run_batch
from .connection import ConnectionSettings
from .filters import Condition
from .qdrant_common import (
    doc_id_filter,
    encoded_vectors,
    fusion_inputs,
    metadata_filter,
    point_vectors,
    qdrant_rrf_k,
    scored_point,
    stored_record,
)
from .remote import RemoteStore
from .retry import TRANSIENT_STATUSES, RetryPolicy
from .server_versions import (
    QDRANT_METADATA,
    ServerFeatures,
    log_fallbacks,
    parse_version,
    qdrant_features,
    version_text,
)

SCHEMA_KEY = "sparsehybrid"
DEFAULT_COLLECTION = "sparsehybrid"
T = TypeVar("T")


def _models():
    from qdrant_client import models

    return models


def qdrant_filter(conditions: list[Condition]) -> Any:
    """Translate parsed conditions to a qdrant-client ``Filter`` over the ``metadata`` payload."""
    m = _models()
    return metadata_filter(m, conditions, m.Range)


def client_has_rrf_weights() -> bool:
    """qdrant-client >= 1.17: ``Rrf`` has ``weights`` (1.16 refuses the keyword, even as None)."""
    rrf = getattr(_models(), "Rrf", None)
    return rrf is not None and "weights" in rrf.model_fields


def weighted(weights: Sequence[float] | None) -> bool:
    """Whether Qdrant needs the weights: its weighted RRF is not a scaling, so any weight but 1 counts."""
    return bool(weights) and any(x != 1.0 for x in weights or ())


def rrf_query(k: int, weights: list[float] | None):
    """Server-side RRF matching :func:`sparsehybrid.fusion.reciprocal_rank_fusion`'s ``k``.

    See :func:`~.qdrant_common.qdrant_rrf_k` for the ``k`` offset. Weighted RRF differs in form
    (Qdrant: ``1 / (rank / w + k_q - 1)``), so weights are passed only when not all 1, and only
    to a client and server that know them (:func:`client_has_rrf_weights`; the caller checks the
    server). Older clients without ``RrfQuery`` get plain ``Fusion.RRF`` (their k).
    """
    m = _models()
    if hasattr(m, "RrfQuery"):
        if weighted(weights):
            return m.RrfQuery(rrf=m.Rrf(k=qdrant_rrf_k(k), weights=[float(x) for x in weights or ()]))
        return m.RrfQuery(rrf=m.Rrf(k=qdrant_rrf_k(k)))
    return m.FusionQuery(fusion=m.Fusion.RRF)


def _is_transient(exc: BaseException) -> bool:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in TRANSIENT_STATUSES
    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover - httpx ships with qdrant-client
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
            return exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
    except ImportError:  # pragma: no cover
        pass
    return False


class QdrantServerStore(RemoteStore):
    """A Qdrant collection reached through ``qdrant-client`` (server, cloud or local mode).

    Build with :func:`open_qdrant` (``open_store("qdrant://...")``) rather than directly.
    """

    capabilities = frozenset({SPARSE, DENSE, BM25})
    native_fusion = True
    partial_payloads = True

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        safe_url: str,
        batch_size: int = 256,
        retry: RetryPolicy = RetryPolicy(),
        secrets: Sequence[str] = (),
        exact_dense: bool = False,
        payload_index: bool = True,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._client = client
        self.collection = collection
        self._safe_url = safe_url
        self.batch_size = int(batch_size)
        self._retry = retry
        self._secrets = list(secrets)
        self.exact_dense = exact_dense
        self._payload_index = payload_index  # local mode has no payload indexes (and warns)
        self._lock = threading.RLock()
        self._bm25: Any = None
        self._schema: CollectionSchema | None = None
        self.features = self._load_features()
        if not self.features.collection_metadata:
            raise StoreError(
                f"{safe_url}: {self.features.server} is older than the oldest supported Qdrant "
                f"({version_text(QDRANT_METADATA)}: the collection schema lives in collection metadata)"
            )
        log_fallbacks(self._safe_url, self.features)
        self._schema = self._load_schema()

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    @property
    def secrets(self) -> list[str]:
        return self._secrets

    def _is_transient(self, exc: BaseException) -> bool:
        return _is_transient(exc)

    def _load_features(self) -> ServerFeatures:
        """From the server's version (``GET /``); local mode has none, only the client counts."""
        version = None
        if self._payload_index:  # a server, not local mode
            info = self._call("server version", lambda: self._client.info())
            version = parse_version(info.version)
        return qdrant_features(version, client_has_rrf_weights())

    def _load_schema(self) -> CollectionSchema | None:
        if not self._call("collection_exists", lambda: self._client.collection_exists(self.collection)):
            return None
        info = self._call("get_collection", lambda: self._client.get_collection(self.collection))
        meta = getattr(info.config, "metadata", None) or {}
        if SCHEMA_KEY not in meta:
            raise StoreError(
                f"{self._safe_url}: collection {self.collection!r} exists but was not created by sparsehybrid "
                "(no schema in its metadata); choose another collection name"
            )
        schema = CollectionSchema.from_dict(meta[SCHEMA_KEY])
        self._make_bm25(schema)
        return schema

    def _make_bm25(self, schema: CollectionSchema) -> None:
        if schema.bm25:
            import qdrant_edge

            self._bm25 = qdrant_edge.Bm25(
                qdrant_edge.Bm25Config(language=schema.bm25_language, avg_len=float(schema.bm25_avg_len))
            )

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._safe_url

    @property
    def schema(self) -> CollectionSchema | None:
        return self._schema

    def _create_collection(self, schema: CollectionSchema) -> CollectionSchema:
        m = _models()
        vectors = (
            {DENSE: m.VectorParams(size=int(schema.dense_dim), distance=m.Distance.COSINE)} if schema.dense_dim else {}
        )
        sparse: dict[str, Any] = {}
        if schema.sparse_model:
            sparse[SPARSE] = m.SparseVectorParams()
        if schema.bm25:
            sparse[BM25] = m.SparseVectorParams(modifier=m.Modifier.IDF)
        self._call(
            "create_collection",
            lambda: self._client.create_collection(
                self.collection,
                vectors_config=vectors,
                sparse_vectors_config=sparse or None,
                metadata={SCHEMA_KEY: schema.to_dict()},
            ),
        )
        if self._payload_index:
            self._call(
                "create_payload_index",
                lambda: self._client.create_payload_index(
                    self.collection, "doc_id", m.PayloadSchemaType.KEYWORD, wait=True
                ),
            )
        self._schema = schema
        self._make_bm25(schema)
        return schema

    def _save_schema(self, schema: CollectionSchema) -> None:
        with self._lock:
            self._call(
                "update_collection",
                lambda: self._client.update_collection(self.collection, metadata={SCHEMA_KEY: schema.to_dict()}),
            )
            self._schema = schema

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @property
    def client(self):
        if self._client is None:
            raise StoreError(f"{self._safe_url} is closed")
        return self._client

    def _require_schema(self) -> CollectionSchema:
        if self._schema is None:
            raise StoreError(f"{self._safe_url} holds no collection yet: index something first")
        return self._schema

    # -- writes ------------------------------------------------------------------------------
    def _upsert(self, records: Sequence[PointRecord]) -> int:
        m = _models()
        schema = self._require_schema()
        # Every vector is checked before anything is written.
        points = [
            m.PointStruct(id=r.id, vector=point_vectors(r, schema, m, self._bm25), payload=r.payload()) for r in records
        ]
        for start in range(0, len(points), self.batch_size):
            batch = points[start : start + self.batch_size]
            self._call("upsert", partial(self.client.upsert, self.collection, points=batch, wait=True))
        return len(points)

    def delete_points(self, point_ids: Sequence[str]) -> None:
        if not point_ids or self._schema is None:
            return
        m = _models()
        ids = list(point_ids)
        for start in range(0, len(ids), self.batch_size):
            batch = ids[start : start + self.batch_size]
            self._call(
                "delete",
                partial(self.client.delete, self.collection, points_selector=m.PointIdsList(points=batch), wait=True),
            )

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids or self._schema is None:
            return
        m = _models()
        flt = doc_id_filter(m, doc_ids)
        self._call(
            "delete",
            lambda: self.client.delete(self.collection, points_selector=m.FilterSelector(filter=flt), wait=True),
        )

    # -- reads -------------------------------------------------------------------------------
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        conditions = self._conditions(filter)
        if self._schema is None:
            return 0
        flt = qdrant_filter(conditions)
        return int(self._call("count", lambda: self.client.count(self.collection, count_filter=flt, exact=True)).count)

    def get(self, point_ids: Sequence[str], with_sparse: bool = False) -> list[ScoredPoint]:
        if not point_ids or self._schema is None:
            return []
        records = self._call(
            "retrieve",
            lambda: self.client.retrieve(
                self.collection, ids=list(point_ids), with_payload=True, with_vectors=[SPARSE] if with_sparse else False
            ),
        )
        return [scored_point(r, 0.0) for r in records]

    def iter_points(self, batch_size: int = 1000) -> Iterator[ScoredPoint]:
        for records in self._scroll(batch_size, with_vectors=False):
            yield from (scored_point(r, 0.0) for r in records)

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        schema = self._schema
        if schema is None:
            return
        for records in self._scroll(batch_size, with_vectors=encoded_vectors(schema)):
            yield [stored_record(r, schema) for r in records]

    def _scroll(self, batch_size: int, with_vectors: bool | list[str]) -> Iterator[list[Any]]:
        """Every point with its payload (and ``with_vectors``), a page at a time."""
        if self._schema is None:
            return
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                partial(
                    self.client.scroll,
                    self.collection,
                    limit=batch_size,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                ),
            )
            if records:
                yield records
            if offset is None:
                break

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]:
        if not point_ids or self._schema is None:
            return []
        schema = self._schema
        found = self._call(
            "retrieve",
            lambda: self.client.retrieve(
                self.collection, ids=list(point_ids), with_payload=True, with_vectors=encoded_vectors(schema)
            ),
        )
        return [stored_record(r, schema) for r in found]

    def _query(self, what: str, fields: Sequence[str] | None = None, **kwargs: Any) -> list[ScoredPoint]:
        payload = list(fields) if fields is not None else True
        response = self._call(what, lambda: self.client.query_points(self.collection, with_payload=payload, **kwargs))
        return [scored_point(p, p.score) for p in response.points]

    # Each retrieval is built once as ``query_points`` arguments (None: nothing to ask), so a
    # single search and a batch send the same request.
    def _sparse_args(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool
    ) -> dict[str, Any] | None:
        if not len(vector) or self._schema is None:
            return None
        qv = _models().SparseVector(indices=list(vector.indices), values=list(vector.values))
        return {
            "query": qv,
            "using": SPARSE,
            "limit": int(limit),
            "query_filter": qdrant_filter(conditions),
            "with_vectors": [SPARSE] if with_sparse else False,
        }

    def _dense_args(self, vector: list[float], limit: int, conditions: list[Condition]) -> dict[str, Any] | None:
        if self._schema is None:
            return None
        params = _models().SearchParams(exact=True) if self.exact_dense else None
        return {
            "query": vector,
            "using": DENSE,
            "limit": int(limit),
            "query_filter": qdrant_filter(conditions),
            "search_params": params,
        }

    def _bm25_args(self, text: str, limit: int, conditions: list[Condition]) -> dict[str, Any] | None:
        qv = self._bm25_query(text) if self._schema is not None else None
        if qv is None:
            return None
        return {"query": qv, "using": BM25, "limit": int(limit), "query_filter": qdrant_filter(conditions)}

    def _fused_args(self, query: FusedQuery) -> dict[str, Any] | None:
        """RRF in the server: one prefetch per retriever, fused by the Query API. Raises
        :class:`_ServerCannotFuse` where this server version cannot fuse the query."""
        m = _models()
        flt = qdrant_filter(query.conditions)
        inputs = fusion_inputs(query, m, self._bm25)
        if not inputs:
            return None
        weights = query.weight_list([n for n, _ in inputs])
        if not self.features.fuses(weighted(weights)):
            raise _ServerCannotFuse
        prefetch = [m.Prefetch(query=vec, using=name, limit=query.candidates, filter=flt) for name, vec in inputs]
        return {"prefetch": prefetch, "query": rrf_query(query.k, weights), "limit": query.limit, "query_filter": flt}

    def _search_sparse(
        self,
        vector: SparseVector,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        args = self._sparse_args(vector, limit, conditions, with_sparse)
        return self._query("sparse search", fields=fields, **args) if args is not None else []

    def _search_dense(
        self, vector: list[float], limit: int, conditions: list[Condition], fields: Sequence[str] | None = None
    ) -> list[ScoredPoint]:
        args = self._dense_args(vector, limit, conditions)
        return self._query("dense search", fields=fields, **args) if args is not None else []

    def _bm25_query(self, text: str):
        if self._bm25 is None:
            return None
        bm = self._bm25.embed_query(text)
        if not len(bm.indices):
            return None
        return _models().SparseVector(indices=list(bm.indices), values=list(bm.values))

    def _search_bm25(
        self, text: str, limit: int, conditions: list[Condition], fields: Sequence[str] | None = None
    ) -> list[ScoredPoint]:
        args = self._bm25_args(text, limit, conditions)
        return self._query("bm25 search", fields=fields, **args) if args is not None else []

    def _search_fused(self, query: FusedQuery) -> list[ScoredPoint]:
        try:
            args = self._fused_args(query)
        except _ServerCannotFuse:
            return self._client_fused_query(query)
        return self._query("hybrid search", **args) if args is not None else []

    def _client_fused_query(self, query: FusedQuery) -> list[ScoredPoint]:
        inputs = fusion_inputs(query, _models(), self._bm25)
        weights = query.weight_list([n for n, _ in inputs])
        ours = {SPARSE: query.sparse, DENSE: query.dense, BM25: query.text}
        parts = {name: ours[name] for name, _ in inputs}
        return self._client_fused(
            parts, query.limit, query.candidates, query.k, dict(zip(parts, weights)), query.conditions
        )

    def search_batch(self, queries: Sequence[StoreQuery]) -> list[list[ScoredPoint]]:
        """Every query in one ``POST /collections/{name}/points/query/batch`` (the requests the
        single ``search_*`` calls send); a fused query this server version cannot fuse runs on
        its own, fused here, as :meth:`search_fused` does."""
        m = _models()
        plan = [self._batch_step(query) for query in queries]

        def request(batched: _QueryArgs) -> Any:
            args, fields = batched
            return m.QueryRequest(
                query=args.get("query"),
                using=args.get("using"),
                prefetch=args.get("prefetch"),
                filter=args.get("query_filter"),
                params=args.get("search_params"),
                limit=args["limit"],
                with_payload=list(fields) if fields is not None else True,
                with_vector=args.get("with_vectors", False),
            )

        def send(batched: list[_QueryArgs]) -> list[Any]:
            requests = [request(b) for b in batched]
            return self._call(
                "batch search", lambda: self.client.query_batch_points(self.collection, requests=requests)
            )

        return run_batch(
            queries,
            plan,
            send=send,
            read=lambda _batched, answer: [scored_point(p, p.score) for p in answer.points],
            on_its_own=self.search_one,
        )

    def _batch_step(self, query: StoreQuery) -> Step[_QueryArgs]:
        """``query``'s ``query_points`` arguments and payload fields, validated as its
        ``search_*`` call validates them; on its own when this server version cannot fuse it."""
        try:
            return batched_or_empty(self._build_request(query, _ServerRequests(self)))
        except _ServerCannotFuse:
            return OnItsOwn()


#: ``query_points`` arguments and the payload fields a batched query reads.
_QueryArgs = tuple[dict[str, Any], Sequence[str] | None]


@dataclass(frozen=True)
class _ServerRequests:
    """The ``query_points`` arguments each ``search_*`` call of ``store`` sends (:class:`RequestBuilder`)."""

    store: QdrantServerStore

    @staticmethod
    def _with(args: dict[str, Any] | None, fields: Sequence[str] | None) -> _QueryArgs | None:
        return (args, fields) if args is not None else None

    def sparse(
        self,
        vector: SparseVector,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool,
        fields: Sequence[str] | None,
    ) -> _QueryArgs | None:
        return self._with(self.store._sparse_args(vector, limit, conditions, with_sparse), fields)

    def dense(
        self, vector: list[float], limit: int, conditions: list[Condition], fields: Sequence[str] | None
    ) -> _QueryArgs | None:
        return self._with(self.store._dense_args(vector, limit, conditions), fields)

    def bm25(
        self, text: str, limit: int, conditions: list[Condition], fields: Sequence[str] | None
    ) -> _QueryArgs | None:
        return self._with(self.store._bm25_args(text, limit, conditions), fields)

    def fused(self, query: FusedQuery) -> _QueryArgs | None:
        return self._with(self.store._fused_args(query), None)


class _ServerCannotFuse(Exception):
    """This server version cannot fuse the query (e.g. weighted RRF before 1.17): fuse it here."""


def _local_location(url: str) -> tuple[str, dict[str, str]]:
    rest = url.split("://", 1)[1]
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError("qdrant-local:// needs a path, e.g. qdrant-local://./my-index")
    return path, dict(parse_qsl(query))


def open_qdrant(url: str, **options: Any) -> QdrantServerStore:
    """Factory for ``qdrant://``, ``qdrants://`` and ``qdrant-local://`` (see module docstring)."""
    from qdrant_client import QdrantClient

    scheme = url.split("://", 1)[0].lower()
    exact_dense = bool(options.pop("exact_dense", False))
    if scheme == "qdrant-local":
        path, query = _local_location(url)
        query.update({k: str(v) for k, v in options.items() if v is not None})
        collection = query.pop("collection", DEFAULT_COLLECTION)
        batch_size = int(query.pop("batch_size", 256))
        if query:
            raise ValueError(
                f"unknown option(s) for qdrant-local://: {sorted(query)}; known: ['batch_size', 'collection']"
            )
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreLockedError(
                    f"qdrant-local://{path} is open in another process or client; close it first"
                ) from None
            raise
        safe = f"qdrant-local://{path}" + (f"?collection={collection}" if collection != DEFAULT_COLLECTION else "")
        return QdrantServerStore(
            client,
            collection,
            safe_url=safe,
            batch_size=batch_size,
            retry=RetryPolicy(attempts=1),
            exact_dense=exact_dense,
            payload_index=False,
        )

    settings = ConnectionSettings.from_url(
        url,
        env_prefix="QDRANT",
        default_port=6333,
        default_name=DEFAULT_COLLECTION,
        tls_schemes=("qdrants",),
        options=options,
        known_extra=("grpc",),
    )
    prefer_grpc = settings.extra.get("grpc", "false").lower() in ("1", "true", "yes", "on")
    kwargs: dict[str, Any] = {}
    if settings.tls:
        kwargs["verify"] = settings.ca_bundle or settings.verify
    client = QdrantClient(
        host=settings.host,
        port=settings.port,
        https=settings.tls,
        api_key=settings.api_key,
        timeout=int(max(1, round(settings.timeout))),
        prefer_grpc=prefer_grpc,
        **kwargs,
    )
    return QdrantServerStore(
        client,
        settings.name,
        safe_url=settings.safe_url,
        batch_size=settings.batch_size,
        retry=settings.retry,
        secrets=settings.secrets,
        exact_dense=exact_dense,
    )
