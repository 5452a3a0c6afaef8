"""OpenSearch via ``opensearch-py``.

URLs::

    opensearch://HOST[:9200][/INDEX][?options]     plain HTTP
    opensearchs://HOST[:9200][/INDEX][?options]    HTTPS, certificates verified by default

Credentials from the environment: ``OPENSEARCH_USER`` + ``OPENSEARCH_PASSWORD`` (basic auth, the
security plugin's default) or ``OPENSEARCH_API_KEY`` (sent as ``Authorization: ApiKey ...``);
``OPENSEARCH_CA_BUNDLE`` (or ``?ca=PATH``) for a private CA. Options: see
:mod:`sparsehybrid.connectors.connection`, plus ``fusion=auto|server|client`` and
``refresh=wait_for|true|false``.

Sparse vectors live in a ``rank_features`` field queried with ``neural_sparse`` and raw
``query_tokens`` (no model on the cluster: the client encodes); dense vectors in a ``knn_vector``
field (Lucene HNSW, cosine); BM25 is a ``match`` on the analysed text. Hybrid search runs in the
cluster as a ``hybrid`` query through a search pipeline with the ``score-ranker-processor``
(RRF, OpenSearch >= 2.19; weighted RRF >= 3.1, its weights summing to 1.0). The pipeline is put
once per store (a cluster-state write: it needs cluster admin rights); where it is refused
(403, or no neural-search plugin) fusion falls back to client-side RRF, with one log line.
OpenSearch before 3.5 fuses per shard, so on a multi-shard index its RRF can differ from
client-side RRF over the whole index.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..types import SparseVector
from .base import BM25, DENSE, SPARSE, CollectionSchema
from .filters import Condition
from .retry import TRANSIENT_STATUSES
from .search_engine_common import SearchEngineStore, engine_settings
from .search_engine_format import base_mappings, sparse_features
from .search_engine_queries import filter_clauses, source_filter, unequal, with_filter
from .server_versions import ServerFeatures, opensearch_features, parse_version

log = logging.getLogger(__name__)


class OpenSearchStore(SearchEngineStore):
    """A sparsehybrid collection in one OpenSearch index."""

    @staticmethod
    def _client_transient(exc: BaseException) -> bool:
        from opensearchpy import exceptions as e

        if isinstance(exc, (e.ConnectionError, e.ConnectionTimeout)):
            return True
        if isinstance(exc, e.TransportError):
            return isinstance(exc.status_code, int) and exc.status_code in TRANSIENT_STATUSES
        return isinstance(exc, (ConnectionError, TimeoutError))

    # -- DSL -------------------------------------------------------------------------------
    def index_body(self, schema: CollectionSchema) -> dict[str, Any]:
        dense = None
        if schema.dense_dim:
            dense = {
                "type": "knn_vector",
                "dimension": int(schema.dense_dim),
                "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
            }
        return {
            "settings": {"index": {"knn": True}},
            "mappings": base_mappings(schema, {"type": "rank_features"}, dense),
        }

    def sparse_query(self, vector: SparseVector) -> dict[str, Any] | None:
        tokens = sparse_features(vector)
        if not tokens:
            return None
        return {"neural_sparse": {SPARSE: {"query_tokens": tokens}}}

    def knn_query(self, vector: Sequence[float], k: int, conditions: Sequence[Condition]) -> dict[str, Any]:
        inner: dict[str, Any] = {"vector": [float(x) for x in vector], "k": int(k)}
        clauses = filter_clauses(conditions)
        if clauses:
            inner["filter"] = {"bool": {"filter": clauses}}  # Lucene efficient (pre-)filtering
        return {"knn": {DENSE: inner}}

    def dense_search_body(self, vector: Sequence[float], limit: int, conditions: Sequence[Condition]) -> dict[str, Any]:
        return {"query": self.knn_query(vector, limit, conditions), "size": int(limit), "_source": source_filter(False)}

    def _load_features(self) -> ServerFeatures:
        info = self._call("server version", lambda: self.client.info())
        return opensearch_features(parse_version(info["version"]["number"]))

    @staticmethod
    def rrf_pipeline_body(k: int, weights: Sequence[float]) -> dict[str, Any]:
        """Search pipeline running RRF over a hybrid query's clauses (score-ranker-processor).

        Unequal weights are scaled to sum to 1.0, which OpenSearch requires (neural-search
        ``ScoreCombinationUtil.validateWeights``); scaling does not change the ranking.
        """
        combination: dict[str, Any] = {"technique": "rrf", "rank_constant": int(k)}
        if unequal(weights):
            total = float(sum(weights))
            combination["parameters"] = {"weights": [float(w) / total for w in weights]}
        return {
            "description": "sparsehybrid reciprocal rank fusion",
            "phase_results_processors": [{"score-ranker-processor": {"combination": combination}}],
        }

    @staticmethod
    def pipeline_name(body: dict[str, Any]) -> str:
        digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
        return f"sparsehybrid-rrf-{digest}"

    def hybrid_search_body(
        self, parts: dict[str, Any], candidates: int, conditions: Sequence[Condition]
    ) -> dict[str, Any]:
        """One ``hybrid`` query, one clause per retriever, each filtered and each fetching ``candidates``."""
        queries = []
        for name, value in parts.items():
            if name == SPARSE:
                queries.append(with_filter(self._required_sparse_query(value), conditions))
            elif name == DENSE:
                queries.append(self.knn_query(value, candidates, conditions))
            elif name == BM25:
                queries.append(with_filter(self.bm25_query(value), conditions))
        return {"query": {"hybrid": {"queries": queries}}, "size": int(candidates), "_source": source_filter(False)}

    def _fused_request(self, parts, limit, candidates, k, weights, conditions) -> Callable[[], Any]:
        pipeline = self.rrf_pipeline_body(k, weights)
        name = self.pipeline_name(pipeline)
        body = self.hybrid_search_body(parts, candidates, conditions)

        def request() -> Any:
            if name not in self._pipelines:
                self.client.search_pipeline.put(id=name, body=pipeline)
                self._pipelines.add(name)
            return self.client.search(index=self.index, body=body, search_pipeline=name)

        return request

    def _refuses_server_fusion(self, exc: BaseException) -> bool:
        from opensearchpy import exceptions as e

        # No neural-search plugin, no score-ranker-processor, or no right to put a pipeline (403).
        return isinstance(exc, e.TransportError) and exc.status_code in (400, 403, 404)


def open_opensearch(url: str, **options: Any) -> OpenSearchStore:
    """Factory for ``opensearch://`` and ``opensearchs://`` (see module docstring)."""
    from opensearchpy import OpenSearch

    settings, fusion, refresh = engine_settings(url, options, "OPENSEARCH", "opensearchs")
    kwargs: dict[str, Any] = {}
    if settings.user and settings.password:
        kwargs["http_auth"] = (settings.user, settings.password)
    if settings.api_key:
        kwargs["headers"] = {"Authorization": f"ApiKey {settings.api_key}"}
    if settings.tls:
        kwargs.update(use_ssl=True, verify_certs=settings.verify, ssl_show_warn=settings.verify)
        if settings.ca_bundle:
            kwargs["ca_certs"] = settings.ca_bundle
    client = OpenSearch(
        hosts=[{"host": settings.host, "port": settings.port}],
        timeout=settings.timeout,
        max_retries=0,  # retries are ours (sparsehybrid.connectors.retry), with backoff
        retry_on_timeout=False,
        **kwargs,
    )
    return OpenSearchStore(client, settings, fusion=fusion, refresh=refresh)
