"""Elasticsearch via the official ``elasticsearch`` client.

URLs::

    elasticsearch://HOST[:9200][/INDEX][?options]     plain HTTP
    elasticsearchs://HOST[:9200][/INDEX][?options]    HTTPS, certificates verified by default

Credentials from the environment: ``ELASTICSEARCH_API_KEY`` (preferred), or
``ELASTICSEARCH_USER`` + ``ELASTICSEARCH_PASSWORD``; ``ELASTICSEARCH_CA_BUNDLE`` (or ``?ca=PATH``)
for a private CA. Options: see :mod:`sparsehybrid.connectors.connection`, plus
``fusion=auto|server|client`` and ``refresh=wait_for|true|false``.

Sparse vectors live in a ``sparse_vector`` field searched with the ``sparse_vector`` query and a
raw ``query_vector`` (``prune: false``, so no token is skipped); dense vectors in a
``dense_vector`` field (float HNSW, cosine) searched with top-level ``knn``; BM25 is a ``match``
on the analysed text. Hybrid search uses the ``rrf`` retriever (Elasticsearch >= 8.16 with an
enterprise or trial licence; weighted RRF >= 9.2); where the version or licence (read at the first
request) rules it out, or the cluster refuses it, fusion runs client-side with the same formula.

**8.x and 9.x clusters.** The 9.x client asks for ``compatible-with=9`` responses, which 8.x
clusters refuse (400 ``media_type_header_exception``). So the first request (``GET /``) goes out
as plain JSON, and from then on the compatibility headers ask for the cluster's own major when it
is older than the client's (:class:`CompatTransport`): one client works with both majors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from elastic_transport import Transport

from ..types import SparseVector
from .base import BM25, DENSE, SPARSE, CollectionSchema
from .filters import Condition
from .retry import TRANSIENT_STATUSES
from .search_engine_common import SearchEngineStore, engine_settings
from .search_engine_format import base_mappings, sparse_features
from .search_engine_queries import filter_clauses, source_filter, unequal, with_filter
from .server_versions import ServerFeatures, elasticsearch_features, parse_version

log = logging.getLogger(__name__)
#: Elasticsearch's upper bound on ``num_candidates``.
MAX_NUM_CANDIDATES = 10_000


def num_candidates(k: int) -> int:
    """HNSW candidates per shard: generous (recall), bounded by the engine's limit (and >= k)."""
    return int(min(MAX_NUM_CANDIDATES, max(100, 2 * int(k))))


def knn_k(k: int) -> int:
    """``k`` as Elasticsearch takes it: at most ``num_candidates`` (so at most 10,000)."""
    return min(int(k), num_candidates(k))


_COMPAT = re.compile(r"compatible-with=(\d+)")


class CompatTransport(Transport):
    """Sends the compatibility headers the cluster accepts: none before its version is known
    (plain JSON, which every major takes), then ``compatible-with`` at most its major."""

    server_major: int | None = None

    def perform_request(self, method: str, target: str, **kwargs: Any) -> Any:
        headers = kwargs.get("headers")
        if isinstance(headers, Mapping):
            headers = dict(headers)
            for name, value in headers.items():
                if isinstance(value, str) and _COMPAT.search(value):
                    headers[name] = self._compat(value)
            kwargs["headers"] = headers
        return super().perform_request(method, target, **kwargs)

    def _compat(self, value: str) -> str:
        if self.server_major is None:
            return re.sub(r"application/vnd\.elasticsearch\+([\w-]+); compatible-with=\d+", r"application/\1", value)
        major = self.server_major
        return _COMPAT.sub(lambda m: f"compatible-with={min(int(m.group(1)), major)}", value)


class ElasticsearchStore(SearchEngineStore):
    """A sparsehybrid collection in one Elasticsearch index."""

    @staticmethod
    def _client_transient(exc: BaseException) -> bool:
        import elasticsearch

        if isinstance(exc, (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout)):
            return True
        if isinstance(exc, elasticsearch.ApiError):
            return exc.meta.status in TRANSIENT_STATUSES
        return isinstance(exc, (ConnectionError, TimeoutError))

    def _load_features(self) -> ServerFeatures:
        info = self._call("server version", lambda: self.client.info())
        version = parse_version(info["version"]["number"])
        transport = self.client.transport
        if isinstance(transport, CompatTransport):
            transport.server_major = version[0]
        try:
            licence = self.client.license.get()["license"]["type"]
        except Exception:  # no right to read it (or no licence API): the cluster's refusal decides
            licence = None
        return elasticsearch_features(version, licence)

    # -- DSL -------------------------------------------------------------------------------
    def index_body(self, schema: CollectionSchema) -> dict[str, Any]:
        dense = None
        if schema.dense_dim:
            # Float HNSW: newer versions default to quantised (int8/bbq) indexes, which would
            # make scores approximate; "exact and boring" wins here.
            dense = {
                "type": "dense_vector",
                "dims": int(schema.dense_dim),
                "index": True,
                "similarity": "cosine",
                "index_options": {"type": "hnsw"},
            }
        return {"mappings": base_mappings(schema, {"type": "sparse_vector"}, dense)}

    def sparse_query(self, vector: SparseVector) -> dict[str, Any] | None:
        tokens = sparse_features(vector)
        if not tokens:
            return None
        return {"sparse_vector": {"field": SPARSE, "query_vector": tokens, "prune": False}}

    def knn_section(self, vector: Sequence[float], k: int, conditions: Sequence[Condition]) -> dict[str, Any]:
        knn: dict[str, Any] = {
            "field": DENSE,
            "query_vector": [float(x) for x in vector],
            "k": knn_k(k),
            "num_candidates": num_candidates(k),
        }
        clauses = filter_clauses(conditions)
        if clauses:
            knn["filter"] = clauses  # applied during the HNSW search, not after it
        return knn

    def dense_search_body(self, vector: Sequence[float], limit: int, conditions: Sequence[Condition]) -> dict[str, Any]:
        return {"knn": self.knn_section(vector, limit, conditions), "size": int(limit), "_source": source_filter(False)}

    def rrf_search_body(
        self,
        parts: dict[str, Any],
        limit: int,
        candidates: int,
        k: int,
        weights: Sequence[float],
        conditions: Sequence[Condition],
    ) -> dict[str, Any]:
        """An ``rrf`` retriever with one child retriever per part; the weighted form (Elasticsearch
        >= 9.2) only when the weights differ, as equal weights only scale every score."""
        children: list[dict[str, Any]] = []
        for name, value in parts.items():
            if name == SPARSE:
                children.append({"standard": {"query": with_filter(self._required_sparse_query(value), conditions)}})
            elif name == DENSE:
                children.append({"knn": self.knn_section(value, candidates, conditions)})
            elif name == BM25:
                children.append({"standard": {"query": with_filter(self.bm25_query(value), conditions)}})
        if unequal(weights):
            children = [{"retriever": c, "weight": float(w)} for c, w in zip(children, weights)]
        return {
            "retriever": {
                "rrf": {"retrievers": children, "rank_window_size": int(candidates), "rank_constant": int(k)}
            },
            "size": int(min(limit, candidates)),
            "_source": source_filter(False),
        }

    def _fused_request(self, parts, limit, candidates, k, weights, conditions) -> Callable[[], Any]:
        body = self.rrf_search_body(parts, limit, candidates, k, weights, conditions)
        return lambda: self.client.search(index=self.index, body=body)

    def _refuses_server_fusion(self, exc: BaseException) -> bool:
        import elasticsearch

        if not isinstance(exc, elasticsearch.ApiError):
            return False
        text = str(exc).lower()
        return (exc.meta.status == 403 and "licen" in text) or (
            exc.meta.status == 400 and ("rrf" in text or "retriever" in text)
        )


def open_elasticsearch(url: str, **options: Any) -> ElasticsearchStore:
    """Factory for ``elasticsearch://`` and ``elasticsearchs://`` (see module docstring)."""
    from elasticsearch import Elasticsearch

    settings, fusion, refresh = engine_settings(url, options, "ELASTICSEARCH", "elasticsearchs")
    kwargs: dict[str, Any] = {}
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    elif settings.user and settings.password:
        kwargs["basic_auth"] = (settings.user, settings.password)
    if settings.tls:
        kwargs["verify_certs"] = settings.verify
        if settings.ca_bundle:
            kwargs["ca_certs"] = settings.ca_bundle
    scheme = "https" if settings.tls else "http"
    client = Elasticsearch(
        hosts=[f"{scheme}://{settings.host}:{settings.port}"],
        request_timeout=settings.timeout,
        max_retries=0,  # retries are ours (sparsehybrid.connectors.retry), with backoff
        retry_on_timeout=False,
        transport_class=CompatTransport,
        **kwargs,
    )
    return ElasticsearchStore(client, settings, fusion=fusion, refresh=refresh)
