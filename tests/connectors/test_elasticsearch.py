"""Elasticsearch: request bodies checked against the documented query DSL (no server needed),
the shared feature-name / weight encoding, and the conformance suite against a live cluster when
``ELASTICSEARCH_URL`` is set."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

from sparsehybrid.connectors import StoreUnavailableError, open_store
from sparsehybrid.connectors.elasticsearch import ElasticsearchStore
from sparsehybrid.connectors.filters import parse_filter
from sparsehybrid.connectors.search_engine_format import (
    WEIGHT_RTOL,
    bulk_delete_body,
    feature_id,
    feature_name,
    features_to_sparse,
    lucene_feature_value,
    sparse_features,
)
from sparsehybrid.connectors.search_engine_responses import bulk_failures, hit_to_point
from sparsehybrid.types import SparseVector

from .conformance import SCHEMA, StoreConformance

URL = os.environ.get("ELASTICSEARCH_URL")


@pytest.fixture
def offline() -> ElasticsearchStore:
    store = open_store("elasticsearch://localhost:9200/sh-test")
    assert isinstance(store, ElasticsearchStore)
    return store


def test_index_body_maps_sparse_vector_and_float_hnsw_cosine(offline):
    props = offline.index_body(SCHEMA)["mappings"]["properties"]
    assert props["sparse"] == {"type": "sparse_vector"}
    assert props["dense"] == {
        "type": "dense_vector",
        "dims": SCHEMA.dense_dim,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }
    assert props["full_text"]["type"] == "text"


def test_sparse_vector_query_with_raw_query_vector_and_no_pruning(offline):
    body = offline.sparse_search_body(
        SparseVector([30521, 0, 17], [0.9, 1.5, 0.0]), 12, parse_filter({"lang": ["en", "ko"]})
    )
    assert body["query"] == {
        "bool": {
            "must": [{"sparse_vector": {"field": "sparse", "query_vector": {"30521": 0.9, "0": 1.5}, "prune": False}}],
            "filter": [{"terms": {"metadata.lang": ["en", "ko"]}}],
        }
    }
    assert body["size"] == 12


def test_knn_section_and_bm25_match(offline):
    body = offline.dense_search_body([0.6, 0.8], 10, parse_filter({"year": {"gt": 2015}}))
    assert body["knn"] == {
        "field": "dense",
        "query_vector": [0.6, 0.8],
        "k": 10,
        "num_candidates": 100,
        "filter": [{"range": {"metadata.year": {"gt": 2015.0}}}],
    }
    assert offline.dense_search_body([1.0, 0.0], 500, [])["knn"]["num_candidates"] == 1000
    assert offline.bm25_search_body("nozzle", 3, [])["query"] == {"match": {"full_text": {"query": "nozzle"}}}


def test_rrf_retriever_body(offline):
    parts = {"sparse": SparseVector([5], [1.0]), "dense": [0.0, 1.0], "bm25": "jet"}
    conds = parse_filter({"flag": True})
    body = offline.rrf_search_body(parts, 10, 80, 60, [1.0, 1.0, 1.0], conds)
    flt = [{"term": {"metadata.flag": True}}]
    assert body["retriever"] == {
        "rrf": {
            "retrievers": [
                {
                    "standard": {
                        "query": {
                            "bool": {
                                "must": [
                                    {"sparse_vector": {"field": "sparse", "query_vector": {"5": 1.0}, "prune": False}}
                                ],
                                "filter": flt,
                            }
                        }
                    }
                },
                {"knn": {"field": "dense", "query_vector": [0.0, 1.0], "k": 80, "num_candidates": 160, "filter": flt}},
                {
                    "standard": {
                        "query": {"bool": {"must": [{"match": {"full_text": {"query": "jet"}}}], "filter": flt}}
                    }
                },
            ],
            "rank_window_size": 80,
            "rank_constant": 60,
        }
    }
    assert body["size"] == 10
    weighted = offline.rrf_search_body(parts, 10, 80, 60, [2.0, 1.0, 0.5], [])
    assert [c["weight"] for c in weighted["retriever"]["rrf"]["retrievers"]] == [2.0, 1.0, 0.5]
    assert "knn" in weighted["retriever"]["rrf"]["retrievers"][1]["retriever"]
    json.dumps(body)


def test_url_options_and_down_cluster_without_secrets(monkeypatch):
    secret = "planted-" + uuid.uuid4().hex
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", secret)
    store = open_store("elasticsearch://127.0.0.1:1/sh-down?retries=2&timeout=2")
    assert store.settings.api_key == secret
    assert secret not in repr(store) and secret not in repr(store.settings) and secret not in store.url
    with pytest.raises(StoreUnavailableError) as info:
        store.ensure_schema(SCHEMA)
    assert "elasticsearch://127.0.0.1:1/sh-down" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value) and info.value.__cause__ is None


# -- shared encoding (search_engine_format) -----------------------------------------------------
def test_feature_names_are_reversible_and_collision_free():
    ids = [*list(range(0, 40000)), 2**31 - 1, 2**32 + 5]
    names = [feature_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert [feature_id(n) for n in names] == ids
    assert all("." not in n for n in names)
    for bad in ["01", "1.5", "-3", "", "１２", "a1", "1_0"]:
        with pytest.raises(ValueError):
            feature_id(bad)
    with pytest.raises(ValueError):
        feature_name(-1)


def test_only_positive_weights_are_sent_and_sparse_round_trips():
    vec = SparseVector([1, 2, 3, 4, 5], [0.5, 0.0, -2.0, 1e-45, 3.0])
    assert sparse_features(vec) == {"1": 0.5, "5": 3.0}
    back = features_to_sparse(sparse_features(vec))
    assert back.as_dict() == {1: 0.5, 5: 3.0}


def test_lucene_keeps_nine_significant_bits():
    rng = np.random.default_rng(0)
    weights = rng.uniform(1e-3, 10.0, size=5000)
    stored = np.array([lucene_feature_value(w) for w in weights])
    rel = (weights - stored) / weights
    assert (rel >= -1e-7).all() and (rel < WEIGHT_RTOL).all()  # truncation: never above, < 2**-8 below
    assert rel.max() > WEIGHT_RTOL / 2  # the bound is tight, i.e. the emulation really drops bits
    assert (
        lucene_feature_value(1.0) == 1.0 and lucene_feature_value(1.00390625) == 1.00390625
    )  # 1 + 2**-8 representable


def test_bulk_delete_and_failure_reporting():
    assert bulk_delete_body("ix", ["a", "b"]) == [
        {"delete": {"_index": "ix", "_id": "a"}},
        {"delete": {"_index": "ix", "_id": "b"}},
    ]
    response = {
        "errors": True,
        "items": [
            {"index": {"_id": "p1", "status": 201}},
            {"delete": {"_id": "p2", "status": 404}},
            {
                "index": {
                    "_id": "p3",
                    "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "bad dense"},
                }
            },
        ],
    }
    assert bulk_failures(response) == [("p3", 400, "mapper_parsing_exception: bad dense")]
    assert bulk_failures({"errors": False, "items": []}) == []


def test_hit_to_point_strips_internal_fields():
    hit = {
        "_id": "x",
        "_score": 2.5,
        "_source": {"doc_id": "d", "chunk": 0, "text": "t", "full_text": "T t", "sparse": {"7": 1.0}, "dense": [1.0]},
    }
    p = hit_to_point(hit, 2.5, with_sparse=True)
    assert p.payload == {"doc_id": "d", "chunk": 0, "text": "t"}
    assert p.sparse.as_dict() == {7: 1.0} and p.score == 2.5


@pytest.mark.skipif(not URL, reason="ELASTICSEARCH_URL not set: no Elasticsearch cluster to test against")
class TestElasticsearchConformance(StoreConformance):
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
