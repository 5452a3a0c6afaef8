"""What OpenSearch and Elasticsearch share: feature names, weights, filters, mappings, bulk bodies,
and the store logic around them. Each engine module only adds its own sparse/dense/hybrid DSL.

**Feature names.** A sparse vector's token id ``123`` is stored as the feature name ``"123"``:
reversible (:func:`feature_id`), collision-free, and free of the dots that both engines treat
as object paths. (sentence-transformers' Elasticsearch example stores decoded tokens with "."
replaced by "_", which merges distinct tokens and cannot be inverted; we do not.)

**Weights.** ``rank_features`` (OpenSearch) and ``sparse_vector`` (Elasticsearch) accept only
positive weights, so zero and negative weights are dropped on both sides (SPLADE weights are
>= 0 anyway). Scores are the plain dot product: both queries used here (``neural_sparse`` with
raw ``query_tokens``; ``sparse_vector`` with ``query_vector``) sum ``query weight * stored
weight``, with no ``rank_feature`` saturation. Lucene stores each weight with 9 significant bits
(it keeps the top 9 bits of the float32 mantissa, truncating), so a stored weight and hence a
score can be up to 2**-8 (0.39%) below the exact value; :func:`lucene_feature_value` reproduces it.

**Document layout.** ``_id`` is the point id; ``_source`` holds the payload fields of
:meth:`PointRecord.payload` plus ``full_text`` (title + text, analysed for BM25), ``sparse`` and
``dense``. Metadata strings map to ``keyword``, numbers to ``double``, booleans to ``boolean``
(dynamic templates), so filters are exact. The :class:`CollectionSchema` lives in the index
mapping's ``_meta``.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

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
    check_vectors,
    record_from_stored,
)
from .filters import Condition
from .remote import RemoteStore
from .retry import RetryPolicy, describe_error
from .server_versions import UNKNOWN, ServerFeatures, log_fallbacks
from .settings import ConnectionSettings

T = TypeVar("T")
log = logging.getLogger(__name__)

FULL_TEXT = "full_text"
META_KEY = "sparsehybrid"
#: Fields in ``_source`` that are not payload.
INTERNAL_FIELDS = (SPARSE, DENSE, FULL_TEXT)
PAYLOAD_FIELDS = ("doc_id", "chunk", "n_chunks", "start", "end", "text", "title", "metadata", "content_hash")
#: Smallest weight sent: float32's smallest normal number (Lucene rejects denormals and zero).
MIN_WEIGHT = float(np.finfo(np.float32).tiny)
#: Relative precision of a stored weight (9 significant bits, truncated).
WEIGHT_RTOL = 2.0**-8
#: Built-in language analyzers both engines ship; anything else falls back to ``standard``.
LANGUAGE_ANALYZERS = frozenset(
    [
        "arabic",
        "armenian",
        "basque",
        "bengali",
        "brazilian",
        "bulgarian",
        "catalan",
        "cjk",
        "czech",
        "danish",
        "dutch",
        "english",
        "estonian",
        "finnish",
        "french",
        "galician",
        "german",
        "greek",
        "hindi",
        "hungarian",
        "indonesian",
        "irish",
        "italian",
        "latvian",
        "lithuanian",
        "norwegian",
        "persian",
        "portuguese",
        "romanian",
        "russian",
        "sorani",
        "spanish",
        "swedish",
        "turkish",
        "thai",
    ]
)


# -- feature names and weights ------------------------------------------------------------------
def feature_name(token_id: int) -> str:
    """Token id -> feature name: its decimal string."""
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
        raise ValueError(f"token id must be a non-negative integer, got {token_id!r}")
    return str(int(token_id))


def feature_id(name: str) -> int:
    """Feature name -> token id; refuses anything :func:`feature_name` cannot have produced."""
    if not name.isascii() or not name.isdigit() or (len(name) > 1 and name[0] == "0"):
        raise ValueError(f"{name!r} is not a sparsehybrid feature name (a token id in decimal)")
    return int(name)


def sparse_features(vector: SparseVector) -> dict[str, float]:
    """The ``{feature name: weight}`` object both engines take; only positive weights."""
    return {feature_name(i): float(v) for i, v in zip(vector.indices, vector.values) if v >= MIN_WEIGHT}


def features_to_sparse(features: Mapping[str, float]) -> SparseVector:
    items = sorted((feature_id(k), float(v)) for k, v in features.items())
    return SparseVector([i for i, _ in items], [v for _, v in items])


def lucene_feature_value(weight: float) -> float:
    """The weight Lucene's FeatureField keeps: float32 with the low 15 mantissa bits cleared."""
    bits = np.array([weight], dtype=np.float32).view(np.uint32)
    return float((bits & np.uint32(0xFFFF8000)).view(np.float32)[0])


# -- filters -------------------------------------------------------------------------------------
def filter_clauses(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    """Parsed conditions -> ``term`` / ``terms`` / ``range`` clauses for a bool ``filter``."""
    out: list[dict[str, Any]] = []
    for c in conditions:
        field = f"metadata.{c.field}"
        if c.op == "eq":
            out.append({"term": {field: c.value}})
        elif c.op == "in":
            out.append({"terms": {field: list(c.value)}})
        else:
            out.append({"range": {field: dict(c.value)}})
    return out


def with_filter(query: dict[str, Any], conditions: Sequence[Condition]) -> dict[str, Any]:
    """Wrap a scoring query in a bool whose ``filter`` clauses restrict but never score."""
    clauses = filter_clauses(conditions)
    if not clauses:
        return query
    return {"bool": {"must": [query], "filter": clauses}}


def filter_query(conditions: Sequence[Condition]) -> dict[str, Any]:
    clauses = filter_clauses(conditions)
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


# -- mappings and documents ----------------------------------------------------------------------
def base_mappings(
    schema: CollectionSchema, sparse_mapping: dict[str, Any], dense_mapping: dict[str, Any] | None
) -> dict[str, Any]:
    """The engine-independent part of the index mapping (payload, metadata, BM25 text, _meta)."""
    analyzer = schema.bm25_language if schema.bm25_language in LANGUAGE_ANALYZERS else "standard"
    props: dict[str, Any] = {
        "doc_id": {"type": "keyword"},
        "chunk": {"type": "integer"},
        "n_chunks": {"type": "integer"},
        "start": {"type": "integer"},
        "end": {"type": "integer"},
        "text": {"type": "text", "index": False},
        "title": {"type": "text", "index": False},
        "content_hash": {"type": "keyword", "index": False},
        "metadata": {"type": "object", "dynamic": True},
    }
    if schema.bm25:
        props[FULL_TEXT] = {"type": "text", "analyzer": analyzer}
    if schema.sparse_model:
        props[SPARSE] = sparse_mapping
    if schema.dense_dim and dense_mapping is not None:
        props[DENSE] = dense_mapping
    return {
        "_meta": {META_KEY: schema.to_dict()},
        "dynamic": "strict",
        # A first date-like (or numeric-looking) metadata string would otherwise map its field as
        # date (or number), and a later value that is not would fail its bulk item.
        "date_detection": False,
        "numeric_detection": False,
        "dynamic_templates": [
            {
                "metadata_strings": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword"},
                }
            },
            {
                "metadata_integers": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "long",
                    "mapping": {"type": "double"},
                }
            },
            {
                "metadata_floats": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "double",
                    "mapping": {"type": "double"},
                }
            },
        ],
        "properties": props,
    }


def document_source(record: PointRecord, schema: CollectionSchema) -> dict[str, Any]:
    """``_source`` for one point; raises :class:`StoreError` naming the record on bad vectors."""
    check_vectors(record, schema)
    source = record.payload()
    if schema.bm25:
        source[FULL_TEXT] = record.chunk.full_text
    if schema.sparse_model and record.sparse is not None:
        features = sparse_features(record.sparse)
        if features:
            source[SPARSE] = features
    if schema.dense_dim and record.dense is not None:
        dense = [float(x) for x in record.dense]
        if not any(dense):
            where = f"record {record.chunk.doc_id!r} chunk {record.chunk.chunk}"
            raise StoreError(f"{where}: dense vector is all zeros (cosine similarity is undefined)")
        source[DENSE] = dense
    return source


def bulk_index_body(index: str, records: Sequence[PointRecord], schema: CollectionSchema) -> list[dict[str, Any]]:
    """Bulk API body (action line, source line, ...) indexing every record under its point id."""
    body: list[dict[str, Any]] = []
    for r in records:
        body.append({"index": {"_index": index, "_id": r.id}})
        body.append(document_source(r, schema))
    return body


def bulk_delete_body(index: str, point_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [{"delete": {"_index": index, "_id": pid}} for pid in point_ids]


def source_filter(with_sparse: bool) -> dict[str, Any]:
    return {"excludes": [f for f in INTERNAL_FIELDS if not (with_sparse and f == SPARSE)]}


def hit_to_point(hit: Mapping[str, Any], score: float, with_sparse: bool = False) -> ScoredPoint:
    source = dict(hit.get("_source") or {})
    sparse = None
    if with_sparse:
        sparse = features_to_sparse(source.get(SPARSE) or {})
    payload = {k: source[k] for k in PAYLOAD_FIELDS if k in source}
    return ScoredPoint(id=str(hit["_id"]), score=float(score), payload=payload, sparse=sparse)


def hit_to_record(hit: Mapping[str, Any], schema: CollectionSchema) -> PointRecord:
    """A hit read with :data:`ENCODED_SOURCE` as the record that wrote it (``_source`` keeps the
    weights as sent, not Lucene's truncated copies)."""
    source = hit.get("_source") or {}
    sparse = features_to_sparse(source[SPARSE]) if source.get(SPARSE) else None
    payload = {k: source[k] for k in PAYLOAD_FIELDS if k in source}
    return record_from_stored(payload, sparse, source.get(DENSE), schema)


#: ``_source`` filter for reading records with their vectors (``sparsehybrid copy``).
ENCODED_SOURCE = {"excludes": [FULL_TEXT]}


def bulk_failures(response: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(point id, status, reason) of each failed bulk item (a delete of a missing id is fine)."""
    out: list[tuple[str, int, str]] = []
    if not response.get("errors"):
        return out
    for item in response.get("items", []):
        ((action, result),) = item.items()
        status = int(result.get("status", 0))
        if status >= 300 and not (action == "delete" and status == 404):
            err = result.get("error") or {}
            reason = f"{err.get('type', 'error')}: {err.get('reason', '')}" if isinstance(err, Mapping) else str(err)
            out.append((str(result.get("_id")), status, reason))
    return out


def unequal(weights: Sequence[float]) -> bool:
    """Whether RRF weights change the ranking (equal weights only scale every score)."""
    return any(w != weights[0] for w in weights)


def shard_failures(response: Mapping[str, Any]) -> str | None:
    """Why some shards failed a search or count (then its hits are incomplete); None when none did."""
    shards = response.get("_shards") or {}
    if not shards.get("failed"):
        return None
    first = (shards.get("failures") or [{}])[0]
    reason = first.get("reason") or {}
    text = f"{reason.get('type', 'error')}: {reason.get('reason', '')}" if isinstance(reason, Mapping) else str(reason)
    return f"{shards['failed']} of {shards.get('total', '?')} shard(s) failed; first: {text}"


def delete_by_query_failures(response: Mapping[str, Any]) -> str | None:
    """Why a delete-by-query left documents behind (failures[], version conflicts); None when it did not."""
    failures = response.get("failures") or []
    conflicts = int(response.get("version_conflicts") or 0)
    if not failures and not conflicts:
        return None
    parts = []
    if failures:
        cause = failures[0].get("cause") or {}
        parts.append(f"{len(failures)} failure(s); first: {cause.get('type', 'error')}: {cause.get('reason', '')}")
    if conflicts:
        parts.append(f"{conflicts} version conflict(s) (documents changed while deleting)")
    return "; ".join(parts)


def mget_errors(docs: Sequence[Mapping[str, Any]]) -> str | None:
    """Why some documents of an mget could not be read (not the same as not found); None when all could."""
    failed = [d for d in docs if d.get("error")]
    if not failed:
        return None
    err = failed[0]["error"]
    text = f"{err.get('type', 'error')}: {err.get('reason', '')}" if isinstance(err, Mapping) else str(err)
    return f"{len(failed)} document(s) could not be read; first: {failed[0].get('_id')} {text}"


def cosine_from_score(score: float) -> float:
    """Both engines report cosine kNN scores as (1 + cos) / 2; give back the cosine."""
    return 2.0 * float(score) - 1.0


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


def hits_to_points(response: Mapping[str, Any], limit: int) -> list[ScoredPoint]:
    """The scored points of a search response, at most ``limit``."""
    return [hit_to_point(h, h["_score"]) for h in response["hits"]["hits"]][: int(limit)]


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
        if self._schema is None:
            return
        after = None
        while True:
            body: dict[str, Any] = {
                "query": {"match_all": {}},
                "size": int(batch_size),
                "sort": [{"doc_id": "asc"}, {"chunk": "asc"}],
                "_source": source_filter(False),
            }
            if after is not None:
                body["search_after"] = after
            hits = self._search("scroll", body)
            for h in hits:
                yield hit_to_point(h, 0.0)
            if len(hits) < batch_size:
                break
            after = hits[-1]["sort"]

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        schema = self._schema
        if schema is None:
            return
        after = None
        while True:
            body: dict[str, Any] = {
                "query": {"match_all": {}},
                "size": int(batch_size),
                "sort": [{"doc_id": "asc"}, {"chunk": "asc"}],
                "_source": ENCODED_SOURCE,
            }
            if after is not None:
                body["search_after"] = after
            hits = self._search("scroll", body)
            if hits:
                yield [hit_to_record(h, schema) for h in hits]
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
        return self._run_plan(self._sparse_plan(vector, limit, conditions, with_sparse, None))

    def _search_dense(self, vector: list[float], limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        return self._run_plan(self._dense_plan(vector, limit, conditions, None))

    def _search_bm25(self, text: str, limit: int, conditions: list[Condition]) -> list[ScoredPoint]:
        return self._run_plan(self._bm25_plan(text, limit, conditions, None))

    def _run_plan(self, plan: Any) -> list[ScoredPoint]:
        """One retrieval on its own: the same (what, body, hits -> points) a batch sends."""
        if plan is None:
            return []
        what, body, to_points = plan
        return to_points(self._search(what, body))

    def search_batch(self, queries: Sequence[StoreQuery]) -> list[list[ScoredPoint]]:
        """Every sparse, dense and BM25 query in one ``_msearch`` (the bodies the single calls
        send); fused queries run on their own (their pipelines and retrievers are per request)."""
        plans = [self._msearch_plan(query) for query in queries]
        lines: list[dict[str, Any]] = []
        for plan in plans:
            if isinstance(plan, tuple):
                lines += [{"index": self.index}, plan[1]]
        responses = iter(
            self._call("batch search", lambda: self.client.msearch(body=lines))["responses"] if lines else []
        )
        results: list[list[ScoredPoint]] = []
        for query, plan in zip(queries, plans):
            if plan is None:
                results.append([])
            elif not isinstance(plan, tuple):
                results.append(self.search_one(query))
            else:
                what, _, to_points = plan
                response = next(responses)
                if "error" in response:
                    raise StoreError(f"{self.url}: {what} failed: {_error_line(response['error'])}")
                self._check_shards(what, response)
                results.append(to_points(response["hits"]["hits"]))
        return results

    def _msearch_plan(self, query: StoreQuery) -> Any:
        """(what, body, hits -> points) of one retrieval as its ``search_*`` call builds it; None
        when that call would return nothing without asking; the query itself for fused ones."""
        if query.retriever == FUSED:
            return query
        return self._build_request(query, self._sparse_plan, self._dense_plan, self._bm25_plan, lambda fused: query)

    # One retrieval as (what, body, hits -> points), or None: the single calls and _msearch share them.
    def _sparse_plan(self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool, _fields):
        body = self.sparse_search_body(vector, limit, conditions, with_sparse) if self._schema is not None else None
        if body is None:
            return None
        self._check_sparse_query()
        return "sparse search", body, lambda hits: [hit_to_point(h, h["_score"], with_sparse) for h in hits]

    def _dense_plan(self, vector: list[float], limit: int, conditions: list[Condition], _fields):
        if self._schema is None:
            return None
        limit = int(limit)
        body = self.dense_search_body(vector, limit, conditions)
        return (
            "dense search",
            body,
            lambda hits: [hit_to_point(h, cosine_from_score(h["_score"])) for h in hits][:limit],
        )

    def _bm25_plan(self, text: str, limit: int, conditions: list[Condition], _fields):
        if self._schema is None or not text.strip():
            return None
        return (
            "bm25 search",
            self.bm25_search_body(text, limit, conditions),
            lambda hits: [hit_to_point(h, h["_score"]) for h in hits],
        )

    def _search_fused(self, query: FusedQuery) -> list[ScoredPoint]:
        """RRF in the engine where the cluster supports it, else client-side with the same formula."""
        assert self._schema is not None  # search_fused returns early without a collection
        parts: dict[str, Any] = {}
        if query.sparse is not None and sparse_features(query.sparse):
            parts[SPARSE] = query.sparse
        if query.dense is not None:
            parts[DENSE] = query.dense
        if query.text is not None and self._schema.bm25:
            parts[BM25] = query.text
        if not parts:
            return []
        if SPARSE in parts:
            self._check_sparse_query()
        w = query.weight_list(list(parts))
        if self.native_fusion and len(parts) >= 2:
            if not self.features.fuses(unequal(w)):
                if self.fusion == "server":
                    why = "; ".join(self.features.why)
                    raise StoreError(f"{self.url}: {self.features.server} cannot run this RRF (fusion=server): {why}")
            else:
                fused = self._native_fused(parts, query.limit, query.candidates, query.k, w, query.conditions)
                if fused is not None:
                    return fused
                if self.fusion == "server":
                    raise StoreError(f"{self.url}: this cluster cannot run RRF server-side (fusion=server)")
                self.native_fusion = False  # remember: this cluster cannot; fuse client-side from now on
        return self._client_fused(parts, query.limit, query.candidates, query.k, dict(zip(parts, w)), query.conditions)


def _error_line(error: Any) -> str:
    """One line from an ``_msearch`` item's error (an object with type and reason, or a string)."""
    if isinstance(error, Mapping):
        cause = (error.get("root_cause") or [error])[0]
        return f"{cause.get('type', 'error')}: {cause.get('reason', '')}"[:300]
    return str(error)[:300]
