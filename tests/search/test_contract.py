"""The search contract: one definition of a search's options that every interface derives from,
one searcher interface, and ``open_searcher`` choosing the implementation so callers never do."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sparsehybrid import open_searcher
from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import AsyncSearcher, HybridSearcher, Searcher, SearchOptions, SearchTiming
from sparsehybrid.service import discovery
from sparsehybrid.service.app import create_app
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from tests.support import as_documents, cranfield_rows, serving

QUERIES = ["wing flutter", "boundary layer heat transfer", "buckling of shells"]


def build_store(path, cranfield, tf_encoder, n: int = 80):
    store = QdrantEdgeStore(path)
    try:
        Indexer(store, tf_encoder, bm25=True, batch_size=32).index(as_documents(cranfield_rows(cranfield, n)))
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, cranfield, tf_encoder):
    return build_store(tmp_path_factory.mktemp("contract") / "idx", cranfield, tf_encoder)


@pytest.fixture(scope="module")
def service(store_dir, tf_encoder) -> Iterator[SearchService]:
    svc = SearchService(QdrantEdgeStore(store_dir), lambda s: HybridSearcher(s, tf_encoder))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service) -> Iterator[SearchClient]:
    with serving(create_app(service, ServiceSettings())) as url, SearchClient(url, retries=0) as sc:
        yield sc


def test_every_searcher_implements_the_one_interface(service, client):
    assert isinstance(service.searcher, Searcher)
    assert isinstance(client, Searcher)
    assert isinstance(AsyncSearchClient("http://127.0.0.1:9"), AsyncSearcher)
    for cls in (HybridSearcher, SearchClient, AsyncSearchClient):
        params = list(inspect.signature(cls.search).parameters)
        assert params[:3] == ["self", "query", "options"], cls  # no copy of the option list anywhere


def test_the_service_request_schema_is_the_contract(client):
    schema = client._http.get("/openapi.json").json()["components"]["schemas"]
    options = set(SearchOptions.model_fields)
    assert set(schema["SearchRequest"]["properties"]) == options | {"query"}
    assert set(schema["BatchRequest"]["properties"]) == options | {"queries"}


def test_search_is_a_batch_of_one(service):
    searcher = service.searcher
    for options in (
        SearchOptions(),
        SearchOptions(mode="bm25", top_k=4),
        SearchOptions(explain=False, fusion="zscore"),
    ):
        for q in QUERIES:
            one = searcher.search(q, options)
            batch = searcher.search_batch([q], options)[0]
            assert [(h.doc_id, h.score, h.explanation) for h in one] == [
                (h.doc_id, h.score, h.explanation) for h in batch
            ]


def test_options_object_and_overrides_agree(service):
    searcher = service.searcher
    a = searcher.search(QUERIES[0], SearchOptions(top_k=3, mode="sparse"))
    b = searcher.search(QUERIES[0], top_k=3, mode="sparse")
    c = searcher.search(QUERIES[0], SearchOptions(top_k=9), top_k=3, mode="sparse")  # overrides win
    assert [h.doc_id for h in a] == [h.doc_id for h in b] == [h.doc_id for h in c]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"top_k": 0}, "top_k"),
        ({"mode": "fuzzy"}, "mode"),
        ({"fusion": "nope"}, "unknown fusion"),
        ({"weights": {"sparce": 1}}, "unknown retriever"),
        ({"weights": {"sparse": math.nan}}, "weights.sparse"),
        ({"weights": {"dense": math.inf}}, "weights.dense"),
        ({"topk": 3}, "topk"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_request(overrides, says):
    with pytest.raises(ValueError, match=says) as info:
        SearchOptions.of(**overrides)
    assert "\n" not in str(info.value)
    # the client checks the same contract before sending anything (nothing listens on port 9)
    with SearchClient("http://127.0.0.1:9", retries=0) as c, pytest.raises(ValueError, match=says):
        c.search("q", **overrides)


def test_the_client_returns_every_stage_of_the_timing(service, client):
    got = client.search(QUERIES[1], top_k=5)
    local = service.searcher.search(QUERIES[1], top_k=5)
    assert [h.doc_id for h in got] == [h.doc_id for h in local]
    assert got.timing.total > 0
    assert set(vars(got.timing)) == set(vars(SearchTiming()))
    assert got.timing.retrieve.keys() == local.timing.retrieve.keys()
    back = SearchTiming.from_ms(local.timing.to_ms())
    assert math.isclose(back.payloads, local.timing.payloads, abs_tol=1e-9)
    assert math.isclose(back.total, local.timing.total, abs_tol=1e-9)


def test_open_searcher_picks_the_implementation(tmp_path, cranfield, tf_encoder):
    store_dir = build_store(tmp_path / "idx", cranfield, tf_encoder, n=10)
    assert isinstance(open_searcher("http://127.0.0.1:9"), SearchClient)
    # an embedded store nobody serves: searched in-process, and the searcher owns (closes) it
    with open_searcher(f"qdrant-edge://{store_dir}", use_sparse=False) as searcher:
        assert isinstance(searcher, HybridSearcher)
        assert searcher.owns_store
    QdrantEdgeStore(store_dir).close()  # the searcher released the engine's lock
    # a store a live service (another process) owns: searched through that service
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        service_file = store_dir / discovery.SERVICE_FILE
        service_file.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": other.pid, "token": "t" * 32}))
        with open_searcher(f"qdrant-edge://{store_dir}") as searcher:
            assert isinstance(searcher, SearchClient)
            assert searcher.url == "http://127.0.0.1:9"
    finally:
        other.kill()
        other.wait()
