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
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import pytest

from sparsehybrid.connectors import open_store
from sparsehybrid.connectors.base import StoreQuery, VectorStore
from tests.conftest import missing_shared, shared_dir

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
    store.search_batch(
        [
            StoreQuery("sparse", 5, sparse=q.sparse, fields=("doc_id",)),
            StoreQuery("dense", 5, dense=q.dense, filter=FILTER),
            StoreQuery("bm25", 5, text="wing flow"),
            StoreQuery("fused", 5, sparse=q.sparse, dense=q.dense, text="wing", candidates=20),
            StoreQuery(
                "fused", 5, sparse=q.sparse, dense=q.dense, candidates=20, weights={"sparse": 2.0, "dense": 1.0}
            ),
        ]
    )
    assert store.count() > 0
    store.count(filter=FILTER)
    assert {p.id for p in store.get([records[1].id, "missing-id"], with_sparse=True)} == {records[1].id}
    assert len(list(store.iter_points(batch_size=4))) == len(records)
    store.delete_points([records[0].id])
    store.delete_documents([records[2].chunk.doc_id])


def findings(captured: list[Captured], specs: list[Spec]) -> list[str]:
    return [str(f) for spec in specs for r in captured for f in spec.validate(r.method, r.path, r.body)]


# -- the three backends, oldest supported and newest version ----------------------------------------------
#: (backend, server version, spec files to validate against). OpenSearch and Elasticsearch publish
#: one current spec; each server version still sends different requests (features fall back).
SERVERS = [
    ("opensearch", "2.19.0", ("opensearch",)),
    ("opensearch", "3.1.0", ("opensearch",)),
    ("elasticsearch", "8.17.0", ("elasticsearch",)),
    ("elasticsearch", "9.2.0", ("elasticsearch",)),
    ("qdrant", "1.16.0", ("v1.16.0",)),
    ("qdrant", "1.17.0", ("master",)),
]


@cache
def captured_requests(backend: str, version: str) -> tuple[Captured, ...]:
    """Every request of :func:`workload` against a recording server answering as ``version``."""
    app = QdrantApp(version) if backend == "qdrant" else SearchEngineApp(backend, version)
    for server in serve(app):
        url = f"{backend}://127.0.0.1:{server.port}/sh-spec"
        store = open_store(url)
        try:
            workload(store)
        finally:
            store.close()
        with open_store(url) as reopened:  # reads the schema back (mapping / collection info)
            assert reopened.schema is not None and reopened.count() > 0
        captured = tuple(server.requests)
    return captured


def spec_of(specs: Path, name: str) -> Spec:
    if name == "opensearch":
        return opensearch_spec(specs)
    if name == "elasticsearch":
        return elasticsearch_spec(specs)
    return qdrant_spec(specs, name)


def kinds(captured: Iterable[Captured]) -> set[str]:
    """Request types: method and path, with the index/collection and pipeline names left out."""
    out = set()
    for r in captured:
        path = re.sub(r"^/(collections/)?sh-spec", r"/\1{name}", r.path)
        out.add(f"{r.method} {re.sub(r'/_search/pipeline/.+', '/_search/pipeline/{id}', path)}")
    return out


ENGINE_REQUESTS = {
    "GET /",
    "HEAD /{name}",
    "PUT /{name}",
    "GET /{name}/_mapping",
    "PUT /{name}/_mapping",
    "POST /{name}/_search",
    "POST /{name}/_count",
    "POST /{name}/_mget",
    "POST /{name}/_delete_by_query",
    "POST /_msearch",
}
EXPECTED = {
    "opensearch": {*ENGINE_REQUESTS, "POST /_bulk", "PUT /_search/pipeline/{id}"},
    "elasticsearch": {*ENGINE_REQUESTS, "PUT /_bulk", "GET /_license"},
    "qdrant": {
        "GET /",
        "PUT /collections/{name}",
        "PATCH /collections/{name}",
        "GET /collections/{name}",
        "PUT /collections/{name}/index",
        "PUT /collections/{name}/points",
        "POST /collections/{name}/points/query",
        "POST /collections/{name}/points/query/batch",
        "POST /collections/{name}/points/count",
        "POST /collections/{name}/points",
        "POST /collections/{name}/points/scroll",
        "POST /collections/{name}/points/delete",
    },
}


@pytest.mark.parametrize("backend, version, spec_names", SERVERS)
def test_every_request_matches_the_spec(backend, version, spec_names, specs):
    captured = captured_requests(backend, version)
    assert EXPECTED[backend] <= kinds(captured)
    for name in spec_names:
        assert findings(list(captured), [spec_of(specs, name)]) == []


def test_server_fusion_is_what_each_version_supports():
    """Rules the specs do not capture (specs README): which RRF each version gets."""

    def pipelines(version):
        return [r.body for r in captured_requests("opensearch", version) if "/_search/pipeline/" in r.path]

    assert all("parameters" not in str(p) for p in pipelines("2.19.0"))  # weighted RRF: >= 3.1
    weighted = [p for p in pipelines("3.1.0") if "parameters" in str(p)]
    combinations = [p["phase_results_processors"][0]["score-ranker-processor"]["combination"] for p in weighted]
    assert combinations and all(sum(c["parameters"]["weights"]) == pytest.approx(1.0) for c in combinations)

    def retrievers(version):
        return [str(r.body) for r in captured_requests("elasticsearch", version) if "retriever" in (r.body or {})]

    assert retrievers("8.17.0") and not any("'weight'" in b for b in retrievers("8.17.0"))  # weighted: >= 9.2
    assert any("'weight'" in b for b in retrievers("9.2.0"))
    for r in captured_requests("elasticsearch", "8.17.0")[1:]:  # after GET /: the cluster's own major
        assert "compatible-with=9" not in r.headers.get("accept", "")


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


#: Keys that are names (fields, features, vectors, templates), not keywords: any spelling is valid.
FIELD_MAPS = {"properties", "term", "terms", "range", "match"}
NAME_MAPS = {
    "opensearch": FIELD_MAPS | {"query_tokens", "knn", "neural_sparse"},
    "elasticsearch": FIELD_MAPS | {"query_vector"},
    "qdrant": {"vectors", "sparse_vectors", "vector"},
}
NAME_LISTS = {"dynamic_templates", "sort"}
#: Subtrees that are free-form data (schema metadata, payloads), and index settings, which the
#: specs leave open (the server checks them against its own registry of settings).
DATA = {"_meta", "payload", "settings"}


def is_name(where: tuple, backend: str) -> bool:
    parent = where[-2] if len(where) > 1 else None
    grandparent = where[-3] if len(where) > 2 else None
    if DATA & set(map(str, where)) or (backend == "qdrant" and where[0] == "metadata"):
        return True
    return parent in NAME_MAPS[backend] or (isinstance(parent, int) and grandparent in NAME_LISTS)


@pytest.mark.parametrize("backend, version, spec_names", [SERVERS[1], SERVERS[3], SERVERS[5]])
def test_a_typo_in_any_request_keyword_is_reported(backend, version, spec_names, specs):
    spec = spec_of(specs, spec_names[0])
    seen: dict[tuple, Captured] = {}  # one request per type and body shape
    for r in captured_requests(backend, version):
        if isinstance(r.body, dict):
            seen.setdefault((r.method, r.path, tuple(sorted(r.body))), r)
        elif isinstance(r.body, list):  # bulk: the action lines
            seen.setdefault((r.method, r.path, "bulk"), r)
    missed, tried = [], set()
    for r in seen.values():
        body = r.body[:3] if isinstance(r.body, list) else r.body
        for where, mutated in typo(body):
            if is_name(where, backend) or (isinstance(body, list) and where[0] % 2):  # bulk sources are documents
                continue
            key = (r.method, r.path, tuple("#" if isinstance(p, int) else p for p in where))
            if key in tried:  # the same keyword at the same place in another request
                continue
            tried.add(key)
            if not spec.rejects(r.method, r.path, mutated):
                missed.append(f"{r.method} {r.path} {'/'.join(map(str, where))}")
    assert len(tried) > 40 and missed == [], f"{len(missed)} of {len(tried)} typos not reported"
