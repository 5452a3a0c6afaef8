"""Every request the three server connectors send, captured at the HTTP layer and validated strictly
against the servers' own API specifications (oldest supported and newest version).

The real client libraries talk to :mod:`.recording_server` through ``open_store(url)``; the same
workload (every request type: create/update mappings, bulk upsert/delete, sparse, dense, BM25,
hybrid weighted and not, filters, count, mget, scroll, delete_by_query, search pipelines) runs on
each backend, and :mod:`.spec_validator` checks each captured body with unknown keys as errors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import missing_shared, shared_dir

from sparsehybrid.connectors import open_store
from sparsehybrid.connectors.base import VectorStore

from .conformance import SCHEMA, make_records
from .recording_server import Captured, QdrantApp, RecordingServer, SearchEngineApp
from .spec_validator import Spec, elasticsearch_spec, opensearch_spec, qdrant_spec

FILTER = {"lang": ["en", "fr"], "year": {"gte": 1990, "lt": 2030}, "flag": True}


@pytest.fixture(scope="session")
def specs() -> Path:
    path = shared_dir() / "specs"
    if not (path / "README.md").exists():
        missing_shared(f"server API specifications not found at {path}")
    return path


def serve(app) -> Iterator[RecordingServer]:
    server = RecordingServer(app)
    yield server
    server.close()


def workload(store: VectorStore) -> None:
    """Every request type the connectors send, in the order an application sends them."""
    records = make_records(6, chunks_per_doc=2)
    store.ensure_schema(SCHEMA)
    store.upsert(records)  # bulk upsert; metadata fields learned -> mapping / collection metadata update
    q = records[0]
    store.search_sparse(q.sparse, 5)
    store.search_sparse(q.sparse, 5, filter=FILTER)
    store.search_dense(q.dense, 5)
    store.search_dense(q.dense, 5, filter=FILTER)
    store.search_bm25("wing flow", 5, filter=FILTER)
    store.search_fused(sparse=q.sparse, dense=q.dense, text="wing", limit=5, candidates=20)
    store.search_fused(sparse=q.sparse, dense=q.dense, limit=5, candidates=20, filter=FILTER)
    store.search_fused(
        sparse=q.sparse, dense=q.dense, text="wing", limit=5, candidates=20, weights={"sparse": 2.0, "dense": 1.0}
    )
    assert store.count() > 0
    store.count(filter=FILTER)
    assert {p.id for p in store.get([records[1].id, "missing-id"], with_sparse=True)} == {records[1].id}
    assert len(list(store.iter_points(batch_size=4))) == len(records)
    store.delete_points([records[0].id])
    store.delete_documents([records[2].chunk.doc_id])


def findings(captured: list[Captured], specs: list[Spec]) -> list[str]:
    return [str(f) for spec in specs for r in captured for f in spec.validate(r.method, r.path, r.body)]


# -- the three backends --------------------------------------------------------------------------------
@pytest.fixture
def opensearch() -> Iterator[RecordingServer]:
    yield from serve(SearchEngineApp("opensearch", "3.1.0"))


@pytest.fixture
def elasticsearch() -> Iterator[RecordingServer]:
    yield from serve(SearchEngineApp("elasticsearch", "9.2.0"))


def run_workload(url: str, server: RecordingServer) -> list[Captured]:
    store = open_store(url)
    try:
        workload(store)
    finally:
        store.close()
    with open_store(url) as reopened:  # reads the schema back (mapping / collection info)
        assert reopened.schema is not None and reopened.count() > 0
    return list(server.requests)


def kinds(captured: list[Captured]) -> set[str]:
    """Request types: method and path, with the index/collection and pipeline names left out."""
    out = set()
    for r in captured:
        path = re.sub(r"^/(collections/)?sh-spec", r"/\1{name}", r.path)
        out.add(f"{r.method} {re.sub(r'/_search/pipeline/.+', '/_search/pipeline/{id}', path)}")
    return out


ENGINE_REQUESTS = {
    "HEAD /{name}",
    "PUT /{name}",
    "GET /{name}/_mapping",
    "PUT /{name}/_mapping",
    "POST /{name}/_search",
    "POST /{name}/_count",
    "POST /{name}/_mget",
    "POST /{name}/_delete_by_query",
}


def test_opensearch_requests_match_the_spec(opensearch, specs):
    captured = run_workload(f"opensearch://127.0.0.1:{opensearch.port}/sh-spec", opensearch)
    assert {*ENGINE_REQUESTS, "POST /_bulk", "PUT /_search/pipeline/{id}"} <= kinds(captured)
    assert findings(captured, [opensearch_spec(specs)]) == []


def test_elasticsearch_requests_match_the_spec(elasticsearch, specs):
    captured = run_workload(f"elasticsearch://127.0.0.1:{elasticsearch.port}/sh-spec", elasticsearch)
    assert {*ENGINE_REQUESTS, "PUT /_bulk"} <= kinds(captured)
    assert any("retriever" in (r.body or {}) for r in captured if r.path.endswith("/_search"))
    assert findings(captured, [elasticsearch_spec(specs)]) == []


@pytest.mark.parametrize("version, spec_version", [("1.16.0", "v1.16.0"), ("1.17.0", "master")])
def test_qdrant_requests_match_the_spec_of_the_server_version(version, spec_version, specs):
    for server in serve(QdrantApp(version)):
        captured = run_workload(f"qdrant://127.0.0.1:{server.port}/sh-spec", server)
    assert {
        "PUT /collections/{name}",
        "PATCH /collections/{name}",
        "GET /collections/{name}",
        "PUT /collections/{name}/index",
        "PUT /collections/{name}/points",
        "POST /collections/{name}/points/query",
        "POST /collections/{name}/points/count",
        "POST /collections/{name}/points",
        "POST /collections/{name}/points/scroll",
        "POST /collections/{name}/points/delete",
    } <= kinds(captured)
    assert findings(captured, [qdrant_spec(specs, spec_version)]) == []


# -- the validator can fail ---------------------------------------------------------------------------
def typo(body, path: tuple = ()):
    """Every body obtained by renaming one object key (at any depth) to a misspelling."""
    if isinstance(body, dict):
        for key, value in body.items():
            mutated = copy.deepcopy(body)
            mutated[key + "x"] = mutated.pop(key)
            yield (*path, key), mutated
            for where, inner in typo(value, (*path, key)):
                yield where, {**body, key: inner}
    elif isinstance(body, list):
        for i, value in enumerate(body):
            for where, inner in typo(value, (*path, i)):
                yield where, [*body[:i], inner, *body[i + 1 :]]


def test_a_typo_in_any_request_keyword_is_reported(opensearch, specs):
    spec = opensearch_spec(specs)
    captured = run_workload(f"opensearch://127.0.0.1:{opensearch.port}/sh-spec", opensearch)
    searches = [r for r in captured if r.path.endswith("/_search") and r.body]
    assert searches
    missed = []
    tried = 0
    for r in searches[:6]:
        for where, mutated in typo(r.body):
            # Keys that are names, not keywords (field names, feature names) may be anything.
            if any(
                str(p).isdigit() or str(p).startswith("metadata.") or p in ("sparse", "dense", "full_text")
                for p in where[-1:]
            ):
                continue
            tried += 1
            if not spec.validate(r.method, r.path, mutated):
                missed.append(where)
    assert tried > 20 and missed == []
