"""The search-server connectors against :mod:`.recording_server` answering as a given version:
what each version makes them send (the version matrix), the headers each Elasticsearch major
accepts, and the failures a server reports inside a 200 answer, which must not pass as success."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sparsehybrid.connectors import StoreError, open_store
from sparsehybrid.connectors.base import VectorStore
from sparsehybrid.connectors.elasticsearch import MAX_NUM_CANDIDATES, ElasticsearchStore
from sparsehybrid.connectors.qdrant_server import client_has_rrf_weights, rrf_query
from sparsehybrid.connectors.server_versions import parse_version

from .conformance import SCHEMA, make_records
from .recording_server import Captured, QdrantApp, RecordingServer, SearchEngineApp

WEIGHTS = {"sparse": 3.0, "dense": 1.0}


@pytest.fixture
def start() -> Iterator:
    servers: list[RecordingServer] = []

    def run(app) -> RecordingServer:
        servers.append(RecordingServer(app))
        return servers[-1]

    yield run
    for s in servers:
        s.close()


def filled(server: RecordingServer, scheme: str, n: int = 4) -> tuple[VectorStore, list]:
    store = open_store(f"{scheme}://127.0.0.1:{server.port}/sh-behaviour?retries=3")
    records = make_records(n)
    store.ensure_schema(SCHEMA)
    store.upsert(records)
    server.clear()
    return store, records


def fuse(store: VectorStore, record, weights=None):
    return store.search_fused(sparse=record.sparse, dense=record.dense, limit=3, candidates=10, weights=weights)


def searches(captured: list[Captured]) -> list[Captured]:
    return [r for r in captured if r.path.endswith("/_search")]


def fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "client-side" in r.getMessage()]


# -- the version matrix ---------------------------------------------------------------------------------
def test_parse_version():
    assert parse_version("9.2.0-SNAPSHOT") == (9, 2, 0) and parse_version("v1.16") == (1, 16, 0)
    with pytest.raises(ValueError):
        parse_version("unknown")


def test_opensearch_3_1_weighted_rrf_weights_sum_to_one_and_the_pipeline_is_put_once(start):
    server = start(SearchEngineApp("opensearch", "3.1.0"))
    store, records = filled(server, "opensearch")
    for _ in range(3):
        fuse(store, records[0], WEIGHTS)
    puts = [r for r in server.requests if r.method == "PUT" and r.path.startswith("/_search/pipeline/")]
    assert len(puts) == 1  # once per store, not per query (a cluster-state write)
    (processor,) = puts[0].body["phase_results_processors"]
    weights = processor["score-ranker-processor"]["combination"]["parameters"]["weights"]
    assert sum(weights) == pytest.approx(1.0) and weights[0] == pytest.approx(3 * weights[1])
    assert all(r.query.get("search_pipeline") for r in searches(server.requests))


def test_opensearch_before_3_1_fuses_weighted_queries_client_side_with_one_log_line(start, caplog):
    server = start(SearchEngineApp("opensearch", "2.19.0"))
    with caplog.at_level(logging.WARNING):
        store, records = filled(server, "opensearch")
        fuse(store, records[0], WEIGHTS)
        fuse(store, records[0], WEIGHTS)
    assert not any("weights" in str(r.body) for r in server.requests if "pipeline" in r.path)
    assert len(searches(server.requests)) == 4 and not any(r.query.get("search_pipeline") for r in server.requests)
    (line,) = fallback_lines(caplog)
    assert "OpenSearch 2.19.0" in line and "weighted RRF needs OpenSearch >= 3.1.0" in line
    server.clear()
    fuse(store, records[0])  # unweighted RRF still runs in the cluster
    assert [r.query.get("search_pipeline") is not None for r in searches(server.requests)] == [True]
    with pytest.raises(StoreError, match=r"weighted RRF needs OpenSearch >= 3\.1"):
        open_store(f"opensearch://127.0.0.1:{server.port}/sh-behaviour?fusion=server").search_fused(
            sparse=records[0].sparse, dense=records[0].dense, weights=WEIGHTS
        )


def test_opensearch_pipeline_refused_403_falls_back_client_side_once(start, caplog):
    server = start(SearchEngineApp("opensearch", "3.1.0"))
    store, records = filled(server, "opensearch")
    denied = {
        "error": {"type": "security_exception", "reason": "no permissions for [cluster:admin/search/pipeline/put]"}
    }
    server.fail("PUT", r"/_search/pipeline/.*", 403, denied, times=5)
    with caplog.at_level(logging.WARNING):
        hits = fuse(store, records[0])
        fuse(store, records[0])
    assert hits and not store.native_fusion
    assert len([r for r in server.requests if "pipeline" in r.path]) == 1
    (line,) = fallback_lines(caplog)
    assert "server-side RRF unavailable" in line


def test_elasticsearch_8_cluster_gets_headers_it_accepts(start):
    server = start(SearchEngineApp("elasticsearch", "8.17.0"))
    store, records = filled(server, "elasticsearch")  # raised media_type_header_exception before
    fuse(store, records[0])
    assert store.count() == 4
    for r in server.requests:
        assert "compatible-with=9" not in r.headers.get("accept", "") + r.headers.get("content-type", "")
    assert "compatible-with=8" in server.requests[-1].headers["accept"]


def test_elasticsearch_9_cluster_gets_the_client_s_own_compatibility(start):
    server = start(SearchEngineApp("elasticsearch", "9.2.0"))
    store, _ = filled(server, "elasticsearch")
    store.count()
    assert "compatible-with=9" in server.requests[-1].headers["accept"]


def test_elasticsearch_basic_licence_and_old_versions_fuse_client_side(start, caplog):
    server = start(SearchEngineApp("elasticsearch", "9.2.0", license="basic"))
    with caplog.at_level(logging.WARNING):
        store, records = filled(server, "elasticsearch")
        fuse(store, records[0])
    assert not any("retriever" in (r.body or {}) for r in searches(server.requests))
    (line,) = fallback_lines(caplog)
    assert "enterprise or trial licence (this cluster: basic)" in line
    old = start(SearchEngineApp("elasticsearch", "8.18.0"))
    store, records = filled(old, "elasticsearch")
    fuse(store, records[0], WEIGHTS)  # weighted RRF needs 9.2: client-side
    fuse(store, records[0])  # plain RRF: the retriever
    assert [("retriever" in (r.body or {})) for r in searches(old.requests)] == [False, False, True]


def test_elasticsearch_equal_weights_send_no_weighted_wrapper():
    store = open_store("elasticsearch://localhost:9200/sh-test")
    assert isinstance(store, ElasticsearchStore)
    body = store.rrf_search_body({"dense": [1.0, 0.0], "bm25": "jet"}, 10, 50, 60, [2.0, 2.0], [])
    assert all("retriever" not in c for c in body["retriever"]["rrf"]["retrievers"])


def test_elasticsearch_k_never_exceeds_num_candidates():
    store = open_store("elasticsearch://localhost:9200/sh-test")
    assert isinstance(store, ElasticsearchStore)
    for k in (1, 60, 5_000, 10_000, 20_000):
        knn = store.knn_section([1.0, 0.0], k, [])
        assert knn["k"] <= knn["num_candidates"] <= MAX_NUM_CANDIDATES


def test_qdrant_1_16_server_gets_no_weights(start, caplog):
    server = start(QdrantApp("1.16.0"))
    with caplog.at_level(logging.WARNING):
        store, records = filled(server, "qdrant")
        fuse(store, records[0], WEIGHTS)
    queries = [r.body for r in server.requests if r.path.endswith("/points/query")]
    assert len(queries) == 2 and not any("prefetch" in q for q in queries)  # one search per retriever
    (line,) = fallback_lines(caplog)
    assert "weighted RRF needs Qdrant >= 1.17.0" in line
    server.clear()
    fuse(store, records[0])
    ((query,),) = [[r.body] for r in server.requests if r.path.endswith("/points/query")]
    assert query["query"] == {"rrf": {"k": 61}}


def test_servers_below_the_supported_range_are_refused_with_one_clear_line(start):
    with pytest.raises(StoreError, match=r"Qdrant 1\.15\.2 is older than the oldest supported Qdrant \(1\.16\.0"):
        open_store(f"qdrant://127.0.0.1:{start(QdrantApp('1.15.2')).port}/sh-behaviour")
    server = start(SearchEngineApp("elasticsearch", "8.14.0"))
    store, records = filled(server, "elasticsearch")
    assert store.search_bm25("wing", 3)  # everything but the sparse query works
    with pytest.raises(StoreError, match=r"Elasticsearch 8\.14\.0 .*has no sparse_vector query"):
        store.search_sparse(records[0].sparse, 3)
    with pytest.raises(StoreError, match="has no sparse_vector query"):
        fuse(store, records[0])
    assert not any("sparse_vector" in str(r.body) for r in server.requests)


def test_qdrant_rrf_query_builds_on_a_client_without_weights(monkeypatch):
    """qdrant-client 1.16's ``Rrf`` has no ``weights`` field and refuses even ``weights=None``."""
    from pydantic import BaseModel, ConfigDict
    from qdrant_client import models

    class Rrf116(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: int | None = None

    monkeypatch.setattr(models, "Rrf", Rrf116)
    monkeypatch.setattr(models, "RrfQuery", lambda rrf: {"rrf": rrf.model_dump(exclude_none=True)})
    assert not client_has_rrf_weights()
    assert rrf_query(60, [1.0, 1.0]) == {"rrf": {"k": 61}}


# -- mappings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_mappings_never_guess_dates_or_numbers_from_strings(start, flavor):
    server = start(SearchEngineApp(flavor, "3.1.0" if flavor == "opensearch" else "9.2.0"))
    open_store(f"{flavor}://127.0.0.1:{server.port}/sh-behaviour").ensure_schema(SCHEMA)
    (create,) = [r for r in server.requests if r.method == "PUT" and r.path == "/sh-behaviour"]
    assert create.body["mappings"]["date_detection"] is False
    assert create.body["mappings"]["numeric_detection"] is False


# -- failures inside a 200 answer ---------------------------------------------------------------------------
@pytest.mark.parametrize("flavor, version", [("opensearch", "3.1.0"), ("elasticsearch", "9.2.0")])
def test_partial_failures_raise_one_clear_error(start, flavor, version):
    server = start(SearchEngineApp(flavor, version))
    store, records = filled(server, flavor)
    ix = "/sh-behaviour"
    conflict = {"took": 1, "deleted": 0, "total": 1, "version_conflicts": 1, "failures": []}
    server.fail("POST", ix + "/_delete_by_query", 200, conflict)
    with pytest.raises(StoreError, match="1 version conflict"):
        store.delete_documents([records[0].chunk.doc_id])
    cause = {"type": "es_rejected_execution_exception", "reason": "queue full"}
    failed = {"took": 1, "deleted": 1, "total": 2, "version_conflicts": 0, "failures": [{"cause": cause}]}
    server.fail("POST", ix + "/_delete_by_query", 200, failed)
    with pytest.raises(StoreError, match=r"1 failure.*queue full"):
        store.delete_documents([records[0].chunk.doc_id])
    error_doc = {"_id": records[1].id, "error": {"type": "shard_not_available_exception", "reason": "down"}}
    server.fail("POST", ix + "/_mget", 200, {"docs": [error_doc]})
    with pytest.raises(StoreError, match=r"could not be read.*shard_not_available_exception"):
        store.get([records[1].id])
    shards = {"total": 2, "successful": 1, "skipped": 0, "failed": 1}
    shards["failures"] = [{"shard": 1, "reason": {"type": "query_shard_exception", "reason": "boom"}}]
    partial = {"_shards": shards, "hits": {"hits": []}}
    server.fail("POST", ix + "/_search", 200, partial)
    with pytest.raises(StoreError, match=r"1 of 2 shard.*query_shard_exception"):
        store.search_bm25("wing", 3)
    server.fail("POST", ix + "/_count", 200, {"count": 3, "_shards": shards})
    with pytest.raises(StoreError, match="count incomplete"):
        store.count()


@pytest.mark.parametrize("flavor, version", [("opensearch", "3.1.0"), ("elasticsearch", "9.2.0")])
def test_bulk_partial_failures_and_overload(start, flavor, version):
    server = start(SearchEngineApp(flavor, version))
    store, records = filled(server, flavor)
    item = {
        "index": {"_id": records[1].id, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "x"}}
    }
    ok = {"index": {"_id": records[0].id, "status": 200}}
    bulk = "POST" if flavor == "opensearch" else "PUT"  # what each client sends
    server.fail(bulk, "/_bulk", 200, {"errors": True, "items": [ok, item]})
    with pytest.raises(StoreError, match=r"1 point\(s\) rejected.*doc-1.*mapper_parsing_exception"):
        store.upsert(records[:2])
    busy = {"errors": True, "items": [{"index": {"_id": records[0].id, "status": 429, "error": {"type": "busy"}}}]}
    server.fail(bulk, "/_bulk", 200, busy)
    server.fail(bulk, "/_bulk", 429, {"error": {"type": "too_many_requests"}, "status": 429})
    assert store.upsert(records[:1]) == 1  # both retried, then written
    assert len([r for r in server.requests if r.path == "/_bulk"]) == 4


@pytest.mark.parametrize("version", ["1.16.0", "1.17.0"])
def test_qdrant_batch_is_one_request_and_unfusable_queries_run_on_their_own(start, version):
    """search_batch sends every retrieval the single calls would send in one /points/query/batch;
    a weighted fusion a 1.16 server cannot do is fused here, as search_fused does."""
    from sparsehybrid.connectors.base import StoreQuery

    server = start(QdrantApp(version))
    store, records = filled(server, "qdrant")
    r = records[0]
    queries = [
        StoreQuery("sparse", 3, sparse=r.sparse, fields=("doc_id",)),
        StoreQuery("dense", 2, dense=r.dense),
        StoreQuery("fused", 3, sparse=r.sparse, dense=r.dense, candidates=10),
        StoreQuery("fused", 3, sparse=r.sparse, dense=r.dense, candidates=10, weights=WEIGHTS),
    ]
    singles = [store.search_one(q) for q in queries]
    sent_alone = [x.body for x in server.requests if x.path.endswith("/points/query")]
    server.clear()
    assert [[p.id for p in got] for got in store.search_batch(queries)] == [[p.id for p in s] for s in singles]
    (batch,) = [x.body["searches"] for x in server.requests if x.path.endswith("/points/query/batch")]
    alone = [x.body for x in server.requests if x.path.endswith("/points/query")]
    if version == "1.16.0":  # the weighted fusion: one search per retriever, fused here
        assert len(batch) == 3 and len(alone) == 2 and sent_alone[-2:] == alone
    else:
        assert len(batch) == 4 and not alone
    for one, in_batch in zip(sent_alone, batch):  # the same request, in a batch: filter / params renamed
        assert one["limit"] == in_batch["limit"] and one.get("using") == in_batch.get("using")
        assert one.get("with_payload") == in_batch.get("with_payload")


@pytest.mark.parametrize("flavor, version", [("opensearch", "3.1.0"), ("elasticsearch", "9.2.0")])
def test_search_engine_batch_is_one_msearch_and_fused_queries_run_on_their_own(start, flavor, version):
    from sparsehybrid.connectors.base import StoreQuery

    server = start(SearchEngineApp(flavor, version))
    store, records = filled(server, flavor)
    r = records[0]
    queries = [
        StoreQuery("sparse", 3, sparse=r.sparse),
        StoreQuery("dense", 2, dense=r.dense, filter={"lang": "en"}),
        StoreQuery("bm25", 3, text="wing flow"),
        StoreQuery("bm25", 3, text="   "),  # nothing to ask: no line in the batch
        StoreQuery("fused", 3, sparse=r.sparse, dense=r.dense, candidates=10),
    ]
    singles = [store.search_one(q) for q in queries]
    alone = [x.body for x in searches(server.requests)]
    server.clear()
    assert [[p.id for p in got] for got in store.search_batch(queries)] == [[p.id for p in s] for s in singles]
    (lines,) = [x.body for x in server.requests if x.path == "/_msearch"]
    assert lines[1::2] == alone[:3] and all(h == {"index": "sh-behaviour"} for h in lines[::2])
    assert len(searches(server.requests)) == len(alone) - 3  # the fused query, on its own


def test_an_msearch_item_error_is_one_clear_line(start):
    from sparsehybrid.connectors.base import StoreQuery

    server = start(SearchEngineApp("opensearch", "3.1.0"))
    store, records = filled(server, "opensearch")
    error = {"root_cause": [{"type": "query_shard_exception", "reason": "failed to create query"}]}
    server.app.msearch = lambda req: (200, {"responses": [{"error": error, "status": 400}]})
    with pytest.raises(StoreError, match=r"sparse search failed: query_shard_exception: failed to create query"):
        store.search_batch([StoreQuery("sparse", 3, sparse=records[0].sparse)])
