"""Elasticsearch via the official ``elasticsearch`` client.

URLs::

    elasticsearch://HOST[:9200][/INDEX][?options]     plain HTTP
    elasticsearchs://HOST[:9200][/INDEX][?options]    HTTPS, certificates verified by default

Credentials from the environment: ``ELASTICSEARCH_API_KEY`` (preferred), or
``ELASTICSEARCH_USER`` + ``ELASTICSEARCH_PASSWORD``; ``ELASTICSEARCH_CA_BUNDLE`` (or ``?ca=PATH``)
for a private CA. Options: see :mod:`sparsehybrid.connectors.settings`, plus
``fusion=auto|server|client`` and ``refresh=wait_for|true|false``.

Sparse vectors live in a ``sparse_vector`` field searched with the ``sparse_vector`` query and a
raw ``query_vector`` (``prune: false``, so no token is skipped); dense vectors in a
``dense_vector`` field (float HNSW, cosine) searched with top-level ``knn``; BM25 is a ``match``
on the analysed text. Hybrid search uses the ``rrf`` retriever (Elasticsearch >= 8.16; the
license must allow it); where it is refused, fusion runs client-side with the same formula.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..types import SparseVector
from .base import CollectionSchema
from .filters import Condition
from .retry import TRANSIENT_STATUSES
from .search_engine_common import (
    BM25,
    DENSE,
    SPARSE,
    SearchEngineStore,
    base_mappings,
    engine_settings,
    filter_clauses,
    source_filter,
    sparse_features,
    with_filter,
)

log = logging.getLogger(__name__)
#: Elasticsearch's upper bound on ``num_candidates``.
MAX_NUM_CANDIDATES = 10_000


def num_candidates(k: int) -> int:
    """HNSW candidates per shard: generous (recall), bounded by the engine's limit."""
    return int(min(MAX_NUM_CANDIDATES, max(100, 2 * int(k))))


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
            "k": int(k),
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
        """An ``rrf`` retriever with one child retriever per part (weights only when not all equal)."""
        children: list[dict[str, Any]] = []
        for name, value in parts.items():
            if name == SPARSE:
                children.append({"standard": {"query": with_filter(self._required_sparse_query(value), conditions)}})
            elif name == DENSE:
                children.append({"knn": self.knn_section(value, candidates, conditions)})
            elif name == BM25:
                children.append({"standard": {"query": with_filter(self.bm25_query(value), conditions)}})
        if any(w != 1.0 for w in weights):
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
        **kwargs,
    )
    return ElasticsearchStore(client, settings, fusion=fusion, refresh=refresh)
