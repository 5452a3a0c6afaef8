"""OpenSearch: request bodies checked against the documented query DSL (no server needed), and
the conformance suite against a live cluster when ``OPENSEARCH_URL`` is set."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from sparsehybrid.connectors import StoreUnavailableError, open_store
from sparsehybrid.connectors.filters import parse_filter
from sparsehybrid.connectors.opensearch import OpenSearchStore
from sparsehybrid.connectors.search_engine_format import WEIGHT_RTOL, bulk_index_body
from sparsehybrid.types import SparseVector

from .conformance import SCHEMA, StoreConformance, make_records

URL = os.environ.get("OPENSEARCH_URL")


@pytest.fixture
def offline() -> OpenSearchStore:
    """A store object whose bodies we inspect; constructing it does not contact any cluster."""
    store = open_store("opensearch://localhost:9200/sh-test")
    assert isinstance(store, OpenSearchStore)
    return store


def test_index_body_maps_rank_features_knn_cosine_and_text(offline):
    body = offline.index_body(SCHEMA)
    assert body["settings"] == {"index": {"knn": True}}
    props = body["mappings"]["properties"]
    assert props["sparse"] == {"type": "rank_features"}
    assert props["dense"] == {
        "type": "knn_vector",
        "dimension": SCHEMA.dense_dim,
        "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
    }
    assert props["full_text"] == {"type": "text", "analyzer": "english"}
    assert props["doc_id"] == {"type": "keyword"}
    assert body["mappings"]["_meta"]["sparsehybrid"]["sparse_model"] == SCHEMA.sparse_model
    templates = {next(iter(t)): next(iter(t.values())) for t in body["mappings"]["dynamic_templates"]}
    assert templates["metadata_strings"]["mapping"] == {"type": "keyword"}
    assert templates["metadata_integers"]["mapping"] == {"type": "double"}
    json.dumps(body)


def test_neural_sparse_query_sends_raw_positive_tokens(offline):
    vec = SparseVector([101, 7, 2048, 5], [1.25, 0.0, 0.5, -0.3])
    body = offline.sparse_search_body(vec, 10, [])
    assert body["query"] == {"neural_sparse": {"sparse": {"query_tokens": {"101": 1.25, "2048": 0.5}}}}
    assert body["size"] == 10
    assert "sparse" in body["_source"]["excludes"] and "dense" in body["_source"]["excludes"]
    assert offline.sparse_search_body(SparseVector([3], [-1.0]), 10, []) is None  # nothing positive: no request


def test_filters_become_term_terms_range_in_a_bool_filter(offline):
    conds = parse_filter({"lang": "ko", "tags": ["a", "b"], "year": {"gte": 2000, "lt": 2010}, "flag": True})
    body = offline.sparse_search_body(SparseVector([1], [1.0]), 5, conds)
    assert body["query"] == {
        "bool": {
            "must": [{"neural_sparse": {"sparse": {"query_tokens": {"1": 1.0}}}}],
            "filter": [
                {"term": {"metadata.lang": "ko"}},
                {"terms": {"metadata.tags": ["a", "b"]}},
                {"range": {"metadata.year": {"gte": 2000.0, "lt": 2010.0}}},
                {"term": {"metadata.flag": True}},
            ],
        }
    }


def test_knn_query_with_efficient_filter(offline):
    body = offline.dense_search_body([0.5, -0.5], 7, parse_filter({"lang": "en"}))
    assert body["query"] == {
        "knn": {
            "dense": {
                "vector": [0.5, -0.5],
                "k": 7,
                "filter": {"bool": {"filter": [{"term": {"metadata.lang": "en"}}]}},
            }
        }
    }
    assert body["size"] == 7
    assert offline.dense_search_body([1.0, 0.0], 3, [])["query"] == {"knn": {"dense": {"vector": [1.0, 0.0], "k": 3}}}


def test_bm25_is_a_match_on_the_analysed_text(offline):
    body = offline.bm25_search_body("shock wave", 4, parse_filter({"year": 1995}))
    assert body["query"] == {
        "bool": {
            "must": [{"match": {"full_text": {"query": "shock wave"}}}],
            "filter": [{"term": {"metadata.year": 1995}}],
        }
    }


def test_bulk_body_indexes_payload_vectors_and_text_under_point_ids(offline):
    records = make_records(3)
    records[0].sparse = SparseVector([4, 9, 12], [0.7, 0.0, -1.0])
    body = bulk_index_body(offline.index, records, SCHEMA)
    assert len(body) == 6
    assert body[0] == {"index": {"_index": "sh-test", "_id": records[0].id}}
    src = body[1]
    assert src["sparse"] == {"4": 0.7}  # zero and negative weights are not sent
    assert src["dense"] == records[0].dense
    assert src["full_text"] == records[0].chunk.full_text
    assert {k: src[k] for k in records[0].payload()} == records[0].payload()
    json.dumps(body, ensure_ascii=False)


def test_rrf_search_pipeline_and_hybrid_query(offline):
    pipeline = offline.rrf_pipeline_body(60, [1.0, 1.0, 1.0])
    assert pipeline["phase_results_processors"] == [
        {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
    ]
    weighted = offline.rrf_pipeline_body(20, [2.0, 1.0])
    # OpenSearch requires combination weights that sum to 1.0
    assert weighted["phase_results_processors"][0]["score-ranker-processor"]["combination"]["parameters"] == {
        "weights": [2.0 / 3.0, 1.0 / 3.0]
    }
    assert offline.pipeline_name(pipeline) != offline.pipeline_name(weighted)
    conds = parse_filter({"lang": "en"})
    body = offline.hybrid_search_body(
        {"sparse": SparseVector([3], [2.0]), "dense": [0.1, 0.2], "bm25": "wing"}, 50, conds
    )
    queries = body["query"]["hybrid"]["queries"]
    term = {"term": {"metadata.lang": "en"}}
    assert queries[0] == {
        "bool": {"must": [{"neural_sparse": {"sparse": {"query_tokens": {"3": 2.0}}}}], "filter": [term]}
    }
    assert queries[1] == {"knn": {"dense": {"vector": [0.1, 0.2], "k": 50, "filter": {"bool": {"filter": [term]}}}}}
    assert queries[2] == {"bool": {"must": [{"match": {"full_text": {"query": "wing"}}}], "filter": [term]}}
    assert body["size"] == 50


def test_url_options_and_fusion_mode():
    store = open_store("opensearchs://search.example:9443/my-index?fusion=client&batch_size=100&timeout=5")
    assert (
        store.url == "opensearchs://search.example:9443/my-index?fusion=client"
    )  # reopenable, batch/timeout are not kept
    assert store.batch_size == 100 and not store.native_fusion and store.settings.tls and store.settings.verify
    assert (
        open_store("opensearchs://h/ix?verify=false&ca=/etc/ca.pem").url
        == "opensearchs://h:9200/ix?ca=%2Fetc%2Fca.pem&verify=false"
    )
    assert open_store("opensearch://h?index=named").url == "opensearch://h:9200/named"
    with pytest.raises(ValueError, match="lowercase"):
        open_store("opensearch://localhost/MyIndex")
    with pytest.raises(ValueError, match="unknown option"):
        open_store("opensearch://localhost/x?fusoin=client")


def test_down_cluster_raises_one_clear_error_and_never_shows_secrets(monkeypatch):
    secret = "planted-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENSEARCH_USER", "admin")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", secret)
    store = open_store("opensearch://127.0.0.1:1/sh-down?retries=2&timeout=2")
    url_secret = "inurl-" + uuid.uuid4().hex
    in_url = open_store(f"opensearch://admin:{url_secret}@127.0.0.1:1/sh-down?retries=1")
    for s in (store, in_url):
        assert secret not in repr(s) and secret not in str(s) and url_secret not in repr(s) and url_secret not in s.url
        assert secret not in repr(s.settings) and url_secret not in repr(s.settings)
    with pytest.raises(StoreUnavailableError) as info:
        store.count()
    assert "opensearch://127.0.0.1:1/sh-down" in str(info.value) and "2 attempt" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert info.value.__cause__ is None
    with pytest.raises(StoreUnavailableError) as info:
        in_url.count()
    assert url_secret not in str(info.value)


@pytest.mark.skipif(not URL, reason="OPENSEARCH_URL not set: no OpenSearch cluster to test against")
class TestOpenSearchConformance(StoreConformance):
    sparse_rtol = WEIGHT_RTOL + 1e-6

    @pytest.fixture
    def store(self):
        name = f"sh-test-{uuid.uuid4().hex[:12]}"
        store = open_store(URL, index=name)
        yield store
        try:
            if store._client is not None:
                store._client.indices.delete(index=name, ignore_unavailable=True)
        finally:
            store.close()
