"""The store logic OpenSearch and Elasticsearch share (:class:`SearchEngineStore`): schema in the
index mapping, bulk writes, reads, one ``_msearch`` per batch, fusion in the engine or here. Each
engine module only adds its own sparse/dense/hybrid DSL. What the documents and mappings look like
is :mod:`.search_engine_format`; filters and shared query parts, :mod:`.search_engine_queries`;
reading responses and their failures, :mod:`.search_engine_responses`.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..types import PointRecord, ScoredPoint, SparseVector
from .base import (
    BM25,
    DENSE,
    FUSED,
    SPARSE,
    CollectionSchema,
    FusedQuery,
    StoreError,
    StoreQuery,
)
from .batch_plan import OnItsOwn, Step, batched_or_empty, run_batch
from .connection import ConnectionSettings
from .filters import Condition
from .remote import RemoteStore
from .retry import RetryPolicy, describe_error
from .search_engine_format import (
    FULL_TEXT,
    META_KEY,
    WEIGHT_RTOL,
    bulk_delete_body,
    bulk_index_body,
    sparse_features,
)
from .search_engine_queries import filter_query, source_filter, unequal, with_filter
from .search_engine_responses import (
    ENCODED_SOURCE,
    bulk_failures,
    cosine_from_score,
    delete_by_query_failures,
    error_line,
    hit_to_point,
    hit_to_record,
    hits_to_points,
    mget_errors,
    shard_failures,
)
from .server_versions import UNKNOWN, ServerFeatures, log_fallbacks

T = TypeVar("T")
log = logging.getLogger(__name__)


def engine_settings(
    url: str, options: dict[str, Any], env_prefix: str, tls_scheme: str
) -> tuple[ConnectionSettings, str, str]:
    """Connection settings of an OpenSearch/Elasticsearch URL, with its ``fusion`` and ``refresh`` options."""
    settings = ConnectionSettings.from_url(
        url,
        env_prefix=env_prefix,
        default_port=9200,
        tls_schemes=(tls_scheme,),
        options=options,
        known_extra=("fusion", "refresh"),
    )
    return settings, settings.extra.get("fusion", "auto").lower(), settings.extra.get("refresh", "wait_for").lower()


_UNLOADED = object()


class RetryableBulkError(Exception):
    """Some bulk items were rejected as overloaded (429/503): the whole batch is retried."""


# -- the store -----------------------------------------------------------------------------------
class SearchEngineStore(RemoteStore):
    """A :class:`VectorStore` over one OpenSearch or Elasticsearch index.

    Subclasses provide the client, its transient-error test, and the engine-specific DSL
    (sparse and dense mappings, sparse/dense queries, native hybrid search).
    """

    capabilities = frozenset({SPARSE, DENSE, BM25})
    #: Feature precision the conformance suite allows for (see the module docstring).
    weight_rtol = WEIGHT_RTOL

    def __init__(self, client: Any, settings: ConnectionSettings, *, fusion: str = "auto", refresh: str = "wait_for"):
        if settings.name != settings.name.lower() or settings.name.startswith(("_", "-", "+")):
            raise ValueError(f"index name {settings.name!r} must be lowercase and not start with _, - or +")
        if fusion not in ("auto", "server", "client"):
            raise ValueError(f"fusion must be auto, server or client, got {fusion!r}")
        if refresh not in ("wait_for", "true", "false"):
            raise ValueError(f"refresh must be wait_for, true or false, got {refresh!r}")
        self._client = client
        self.settings = settings
        self.index = settings.name
        self.batch_size = settings.batch_size
        self.fusion = fusion
        self.native_fusion = fusion != "client"
        self._refresh = {"wait_for": "wait_for", "true": "true", "false": "false"}[refresh]
        self._lock = threading.RLock()
        self._schema_value: Any = _UNLOADED  # loaded on first use: constructing never contacts the cluster
        self._features: ServerFeatures | None = None  # likewise, read before the first other request
        self._pipelines: set[str] = set()  # search pipelines this store has put (OpenSearch)

    @property
    def _schema(self) -> CollectionSchema | None:
        if self._schema_value is _UNLOADED:
            self._schema_value = self._load_schema()
        return self._schema_value

    @_schema.setter
    def _schema(self, value: CollectionSchema | None) -> None:
        self._schema_value = value

    @property
    def features(self) -> ServerFeatures:
        """What this cluster's version (and licence) lets it do; read once, before anything else."""
        if self._features is None:
            self._features = UNKNOWN  # while reading: the version request itself goes straight through
            try:
                self._features = self._load_features()
            except BaseException:
                self._features = None  # read again next time
                raise
            log_fallbacks(self.url, self._features)
        return self._features

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        self.features  # noqa: B018 - the version decides how to talk to the cluster (headers, features)
        return super()._call(what, fn)

    # -- engine hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _load_features(self) -> ServerFeatures:
        """Read the cluster's version (``GET /``) and decide what it can do."""

    @staticmethod
    @abc.abstractmethod
    def _client_transient(exc: BaseException) -> bool:
        """Whether the client library's exception is worth retrying."""

    @abc.abstractmethod
    def index_body(self, schema: CollectionSchema) -> dict[str, Any]:
        """Full create-index body (settings + mappings)."""

    @abc.abstractmethod
    def sparse_query(self, vector: SparseVector) -> dict[str, Any] | None:
        """Scoring query for a sparse vector (None when it has no positive weight)."""

    @abc.abstractmethod
    def dense_search_body(
        self, vector: Sequence[float], limit: int, conditions: Sequence[Condition]
    ) -> dict[str, Any]: ...

    def _check_sparse_query(self) -> None:
        if not self.features.sparse_query:
            raise StoreError(
                f"{self.url}: {self.features.server} has no sparse_vector query (Elasticsearch >= 8.15 has)"
            )

    def _required_sparse_query(self, vector: SparseVector) -> dict[str, Any]:
        """The sparse query of a vector already known to have a positive weight (fused queries)."""
        query = self.sparse_query(vector)
        if query is None:
            raise ValueError("sparse query vector has no positive weight")
        return query

    def bm25_query(self, text: str) -> dict[str, Any]:
        return {"match": {FULL_TEXT: {"query": text}}}

    def sparse_search_body(
        self, vector: SparseVector, limit: int, conditions: Sequence[Condition], with_sparse: bool = False
    ) -> dict[str, Any] | None:
        query = self.sparse_query(vector)
        if query is None:
            return None
        return {"query": with_filter(query, conditions), "size": int(limit), "_source": source_filter(with_sparse)}

    def bm25_search_body(self, text: str, limit: int, conditions: Sequence[Condition]) -> dict[str, Any]:
        return {
            "query": with_filter(self.bm25_query(text), conditions),
            "size": int(limit),
            "_source": source_filter(False),
        }

    def _native_fused(
        self,
        parts: dict[str, Any],
        limit: int,
        candidates: int,
        k: int,
        weights: list[float],
        conditions: Sequence[Condition],
    ) -> list[ScoredPoint] | None:
        """Run RRF in the engine; None when this cluster cannot (then fusion runs client-side)."""
        request = self._fused_request(parts, limit, candidates, k, weights, conditions)
        if request is None:
            return None

        def run() -> Any:
            try:
                return request()
            except Exception as exc:
                if self._refuses_server_fusion(exc):
                    self._note_client_fusion(exc)
                    return None
                raise

        response = self._call("hybrid search", run)
        if response is None:
            return None
        self._check_shards("hybrid search", response)
        return hits_to_points(response, limit)

    def _fused_request(
        self,
        parts: dict[str, Any],
        limit: int,
        candidates: int,
        k: int,
        weights: list[float],
        conditions: Sequence[Condition],
    ) -> Callable[[], Any] | None:
        """The engine's hybrid request (returns its raw response); None: this engine has none."""
        return None

    def _refuses_server_fusion(self, exc: BaseException) -> bool:
        """Whether ``exc`` says this cluster cannot fuse (no plugin, no licence), not a failure."""
        return False

    # -- plumbing --------------------------------------------------------------------------
    @property
    def retry_policy(self) -> RetryPolicy:
        return self.settings.retry

    @property
    def secrets(self) -> list[str]:
        return self.settings.secrets

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, RetryableBulkError) or self._client_transient(exc)

    def _check_shards(self, what: str, response: Mapping[str, Any]) -> None:
        failed = shard_failures(response)
        if failed:
            raise StoreError(f"{self.url}: {what} incomplete: {failed}")

    def _note_client_fusion(self, exc: BaseException) -> None:
        """One log line when the cluster refuses server-side RRF (then fusion runs client-side)."""
        log.warning(
            "%s: server-side RRF unavailable (%s); fusing client-side", self.url, describe_error(exc, self.secrets)
        )

    @property
    def client(self):
        if self._client is None:
            raise StoreError(f"{self.url} is closed")
        return self._client

    def _load_schema(self) -> CollectionSchema | None:
        if not self._call("index exists", lambda: bool(self.client.indices.exists(index=self.index))):
            return None
        mapping = self._call("get mapping", lambda: self.client.indices.get_mapping(index=self.index))
        first: dict[str, Any] = next(iter(dict(mapping).values()), {})
        meta = (first.get("mappings") or {}).get("_meta") or {}
        if META_KEY not in meta:
            raise StoreError(
                f"{self.url}: index {self.index!r} exists but was not created by sparsehybrid; choose another index name"
            )
        return CollectionSchema.from_dict(meta[META_KEY])

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.settings.safe_url

    @property
    def schema(self) -> CollectionSchema | None:
        return self._schema

    def _create_collection(self, schema: CollectionSchema) -> CollectionSchema:
        body = self.index_body(schema)
        self._call("create index", lambda: self.client.indices.create(index=self.index, body=body))
        self._schema = schema
        return schema

    def _save_schema(self, schema: CollectionSchema) -> None:
        with self._lock:
            body = {"_meta": {META_KEY: schema.to_dict()}}
            self._call("put mapping", lambda: self.client.indices.put_mapping(index=self.index, body=body))
            self._schema = schema

    def flush(self) -> None:
        if self._schema is not None:
            self._call("refresh", lambda: self.client.indices.refresh(index=self.index))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- writes ----------------------------------------------------------------------------
    def _bulk(self, body: list[dict[str, Any]], names: Mapping[str, str]) -> None:
        def run():
            response = self.client.bulk(body=body, refresh=self._refresh)
            failures = bulk_failures(response)
            if any(status in (429, 503) for _, status, _ in failures):
                raise RetryableBulkError(f"{len(failures)} bulk item(s) rejected as overloaded")
            return failures

        failures = self._call("bulk", run)
        if failures:
            pid, status, reason = failures[0]
            raise StoreError(
                f"{self.url}: {len(failures)} point(s) rejected; first: {names.get(pid, pid)} (HTTP {status}) {reason}"
            )

    def _upsert(self, records: Sequence[PointRecord]) -> int:
        if self._schema is None:
            raise StoreError("collection does not exist yet: call ensure_schema() first")
        bodies = [
            bulk_index_body(self.index, records[i : i + self.batch_size], self._schema)
            for i in range(0, len(records), self.batch_size)
        ]
        names = {r.id: f"record {r.chunk.doc_id!r} chunk {r.chunk.chunk}" for r in records}
        for body in bodies:
            self._bulk(body, names)
        return len(records)

    def delete_points(self, point_ids: Sequence[str]) -> None:
        if not point_ids or self._schema is None:
            return
        ids = list(point_ids)
        for i in range(0, len(ids), self.batch_size):
            self._bulk(bulk_delete_body(self.index, ids[i : i + self.batch_size]), {})

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids or self._schema is None:
            return
        body = {"query": {"terms": {"doc_id": list(doc_ids)}}}
        response = self._call(
            "delete by query",
            lambda: self.client.delete_by_query(
                index=self.index, body=body, refresh=self._refresh != "false", conflicts="proceed"
            ),
        )
        failed = delete_by_query_failures(response)
        if failed:
            raise StoreError(f"{self.url}: delete of {len(doc_ids)} document(s) incomplete: {failed}")

    # -- reads -----------------------------------------------------------------------------
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        conditions = self._conditions(filter)
        if self._schema is None:
            return 0
        body = {"query": filter_query(conditions)}
        response = self._call("count", lambda: self.client.count(index=self.index, body=body))
        self._check_shards("count", response)
        return int(response["count"])

    def get(self, point_ids: Sequence[str], with_sparse: bool = False) -> list[ScoredPoint]:
        if not point_ids or self._schema is None:
            return []
        body = {"docs": [{"_id": pid, "_source": source_filter(with_sparse)} for pid in point_ids]}
        docs = self._call("mget", lambda: self.client.mget(index=self.index, body=body))["docs"]
        failed = mget_errors(docs)
        if failed:
            raise StoreError(f"{self.url}: get failed: {failed}")
        return [hit_to_point(d, 0.0, with_sparse) for d in docs if d.get("found")]

    def iter_points(self, batch_size: int = 1000) -> Iterator[ScoredPoint]:
        for hits in self._scroll(batch_size, source_filter(False)):
            yield from (hit_to_point(h, 0.0) for h in hits)

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        schema = self._schema
        for hits in self._scroll(batch_size, ENCODED_SOURCE):
            assert schema is not None  # _scroll reads nothing without a collection
            yield [hit_to_record(h, schema) for h in hits]

    def _scroll(self, batch_size: int, source: Any) -> Iterator[list[dict[str, Any]]]:
        """Every point's hit (``_source`` filtered by ``source``), a page at a time, by search_after."""
        if self._schema is None:
            return
        after = None
        while True:
            body: dict[str, Any] = {
                "query": {"match_all": {}},
                "size": int(batch_size),
                "sort": [{"doc_id": "asc"}, {"chunk": "asc"}],
                "_source": source,
            }
            if after is not None:
                body["search_after"] = after
            hits = self._search("scroll", body)
            if hits:
                yield hits
            if len(hits) < batch_size:
                break
            after = hits[-1]["sort"]

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]:
        schema = self._schema
        if not point_ids or schema is None:
            return []
        body = {"docs": [{"_id": pid, "_source": ENCODED_SOURCE} for pid in point_ids]}
        docs = self._call("mget", lambda: self.client.mget(index=self.index, body=body))["docs"]
        failed = mget_errors(docs)
        if failed:
            raise StoreError(f"{self.url}: get failed: {failed}")
        return [hit_to_record(d, schema) for d in docs if d.get("found")]

    def _search(self, what: str, body: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
        response = self._call(what, lambda: self.client.search(index=self.index, body=body, **params))
        self._check_shards(what, response)
        return list(response["hits"]["hits"])

    def _search_sparse(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool
    ) -> list[ScoredPoint]:
        return self._run_alone(self._sparse_retrieval(vector, limit, conditions, with_sparse))

    def _search_dense(self, vector: list[float], limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        return self._run_alone(self._dense_retrieval(vector, limit, conditions))

    def _search_bm25(self, text: str, limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        return self._run_alone(self._bm25_retrieval(text, limit, conditions))

    def _run_alone(self, retrieval: Retrieval | None) -> list[ScoredPoint]:
        """One retrieval on its own: the same request a batch sends."""
        if retrieval is None:
            return []
        return retrieval.to_points(self._search(retrieval.what, retrieval.body))

    def search_batch(self, queries: Sequence[StoreQuery]) -> list[list[ScoredPoint]]:
        """Every sparse, dense and BM25 query in one ``_msearch`` (the bodies the single calls
        send); fused queries run on their own (their pipelines and retrievers are per request)."""
        builder = _Retrievals(self)
        plan: list[Step[Retrieval]] = [
            OnItsOwn() if query.retriever == FUSED else batched_or_empty(self._build_request(query, builder))
            for query in queries
        ]

        def send(retrievals: list[Retrieval]) -> list[Mapping[str, Any]]:
            lines = [line for r in retrievals for line in ({"index": self.index}, r.body)]
            return self._call("batch search", lambda: self.client.msearch(body=lines))["responses"]

        def read(retrieval: Retrieval, response: Mapping[str, Any]) -> list[ScoredPoint]:
            if "error" in response:
                raise StoreError(f"{self.url}: {retrieval.what} failed: {error_line(response['error'])}")
            self._check_shards(retrieval.what, response)
            return retrieval.to_points(response["hits"]["hits"])

        return run_batch(queries, plan, send=send, read=read, on_its_own=self.search_one)

    # One retrieval, or None where its search_* call returns nothing: the single calls and _msearch share them.
    def _sparse_retrieval(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool
    ) -> Retrieval | None:
        body = self.sparse_search_body(vector, limit, conditions, with_sparse) if self._schema is not None else None
        if body is None:
            return None
        self._check_sparse_query()
        return Retrieval("sparse search", body, lambda hits: [hit_to_point(h, h["_score"], with_sparse) for h in hits])

    def _dense_retrieval(self, vector: list[float], limit: int, conditions: list[Condition]) -> Retrieval | None:
        if self._schema is None:
            return None
        limit = int(limit)
        body = self.dense_search_body(vector, limit, conditions)
        return Retrieval(
            "dense search", body, lambda hits: [hit_to_point(h, cosine_from_score(h["_score"])) for h in hits][:limit]
        )

    def _bm25_retrieval(self, text: str, limit: int, conditions: list[Condition]) -> Retrieval | None:
        if self._schema is None or not text.strip():
            return None
        return Retrieval(
            "bm25 search",
            self.bm25_search_body(text, limit, conditions),
            lambda hits: [hit_to_point(h, h["_score"]) for h in hits],
        )

    def _search_fused(self, query: FusedQuery) -> list[ScoredPoint]:
        """RRF in the engine where the cluster supports it, else client-side with the same formula."""
        parts = self._fused_parts(query)
        if not parts:
            return []
        w = query.weight_list(list(parts))
        if self.native_fusion and len(parts) >= 2:
            fused = self._server_fused(parts, query, w)
            if fused is not None:
                return fused
        return self._client_fused(parts, query.limit, query.candidates, query.k, dict(zip(parts, w)), query.conditions)

    def _fused_parts(self, query: FusedQuery) -> dict[str, Any]:
        """The retrievers a fused query has something for: retriever -> its query."""
        assert self._schema is not None  # search_fused returns early without a collection
        parts: dict[str, Any] = {}
        if query.sparse is not None and sparse_features(query.sparse):
            self._check_sparse_query()
            parts[SPARSE] = query.sparse
        if query.dense is not None:
            parts[DENSE] = query.dense
        if query.text is not None and self._schema.bm25:
            parts[BM25] = query.text
        return parts

    def _server_fused(self, parts: dict[str, Any], query: FusedQuery, w: list[float]) -> list[ScoredPoint] | None:
        """RRF in the engine; None to fuse client-side (refused with ``fusion=server``)."""
        if not self.features.fuses(unequal(w)):
            if self.fusion == "server":
                why = "; ".join(self.features.why)
                raise StoreError(f"{self.url}: {self.features.server} cannot run this RRF (fusion=server): {why}")
            return None
        fused = self._native_fused(parts, query.limit, query.candidates, query.k, w, query.conditions)
        if fused is None:
            if self.fusion == "server":
                raise StoreError(f"{self.url}: this cluster cannot run RRF server-side (fusion=server)")
            self.native_fusion = False  # remember: this cluster cannot; fuse client-side from now on
        return fused


@dataclass(frozen=True)
class Retrieval:
    """One sparse, dense or BM25 search request: what it is (for errors), its body, and how its
    hits become points. A single ``search_*`` call and ``_msearch`` send the same one."""

    what: str
    body: dict[str, Any]
    to_points: Callable[[list[dict[str, Any]]], list[ScoredPoint]]


@dataclass(frozen=True)
class _Retrievals:
    """:class:`RequestBuilder` of a search-engine store (fused queries never reach it: they run
    on their own, their pipelines and retrievers being per request)."""

    store: SearchEngineStore

    def sparse(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool, fields: Fields
    ) -> Retrieval | None:
        return self.store._sparse_retrieval(vector, limit, conditions, with_sparse)

    def dense(self, vector: list[float], limit: int, conditions: list[Condition], fields: Fields) -> Retrieval | None:
        return self.store._dense_retrieval(vector, limit, conditions)

    def bm25(self, text: str, limit: int, conditions: list[Condition], fields: Fields) -> Retrieval | None:
        return self.store._bm25_retrieval(text, limit, conditions)

    def fused(self, query: FusedQuery) -> Retrieval | None:
        raise AssertionError("search_batch runs fused queries on their own")


#: The payload keys a search reads (None: all; these stores read whole sources).
Fields = Sequence[str] | None
