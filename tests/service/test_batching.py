"""The service at concurrency: concurrent searches are merged into batches with the hits each
caller would get alone, a full queue is refused with 429 + Retry-After, a deadline is a 504,
and the request bodies are typed strictly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import HybridSearcher, SearchOptions
from sparsehybrid.service.app import create_app
from sparsehybrid.service.batching import BatchingSettings, DeadlineExceeded, DynamicBatcher, Overloaded
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from tests.support import as_documents, cranfield_rows, serving

QUERIES = [
    "wing flutter",
    "boundary layer heat transfer",
    "buckling of shells",
    "supersonic inlet",
    "shock wave interaction",
    "laminar flow on a flat plate",
    "slender body theory",
    "hypersonic heating of a cone",
]


class CountingSearcher(HybridSearcher):
    """A real searcher that records the size of every batch it answers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def search_batch(self, queries, options=None, /, **overrides):
        self.batches.append(len(queries))
        return super().search_batch(queries, options, **overrides)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, cranfield, tf_encoder):
    path = tmp_path_factory.mktemp("batching") / "idx"
    store = QdrantEdgeStore(path)
    try:
        Indexer(store, tf_encoder, bm25=True, batch_size=32).index(as_documents(cranfield_rows(cranfield, 150)))
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def service(store_dir, tf_encoder) -> Iterator[SearchService]:
    svc = SearchService(
        QdrantEdgeStore(store_dir),
        lambda s: CountingSearcher(s, tf_encoder),
        batching=BatchingSettings(workers=2, window_s=0.05, max_batch=16),
    )
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def url(service) -> Iterator[str]:
    with serving(create_app(service, ServiceSettings())) as u:
        yield u


def same(a, b) -> bool:
    return [(h.doc_id, round(h.score, 4), h.explanation.retrievers) for h in a] == [
        (h.doc_id, round(h.score, 4), h.explanation.retrievers) for h in b
    ]


def test_concurrent_requests_are_batched_and_each_gets_its_own_hits(url, service, store_dir, tf_encoder):
    searcher = service.searcher
    searcher.batches.clear()

    async def burst() -> list:
        async with AsyncSearchClient(url) as client:
            return list(await asyncio.gather(*(client.search(q, top_k=6) for q in QUERIES * 3)))

    got = asyncio.run(burst())
    assert max(searcher.batches) > 1, searcher.batches  # requests arriving together shared a batch
    assert sum(searcher.batches) == len(QUERIES) * 3
    for q, hits in zip(QUERIES * 3, got):
        assert same(hits, searcher.search(q, top_k=6)), q  # exactly what it would get alone


def test_requests_with_different_options_are_answered_by_their_own_options(url, service):
    options = [{"top_k": 3, "mode": "sparse"}, {"top_k": 5, "mode": "bm25"}, {"top_k": 4, "fusion": "zscore"}]

    def one(i: int):
        with SearchClient(url) as client:
            return client.search(QUERIES[i % len(QUERIES)], **options[i % 3])

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(one, range(24)))
    for i, hits in enumerate(got):
        want = service.searcher.search(QUERIES[i % len(QUERIES)], **options[i % 3])
        assert same(hits, want), (i, options[i % 3])
    assert [len(h) for h in got[:3]] == [3, 5, 4]  # each request's own top_k (these queries have enough hits)


def test_a_full_queue_is_refused_at_once_with_retry_after():
    release = threading.Event()

    def slow(queries, options):
        release.wait(10)
        return [[] for _ in queries]

    batcher = DynamicBatcher(slow, BatchingSettings(workers=1, window_s=0, max_batch=1, max_queue=2))
    try:
        futures = [batcher.submit(["q"], SearchOptions())]
        deadline = time.monotonic() + 5
        while batcher.queued and time.monotonic() < deadline:  # the worker took the first one
            time.sleep(0.01)
        futures += [batcher.submit(["q"], SearchOptions()) for _ in range(2)]
        t = time.perf_counter()
        with pytest.raises(Overloaded) as info:
            batcher.submit(["q"], SearchOptions())
        assert time.perf_counter() - t < 0.5 and info.value.retry_after >= 1
        release.set()
        assert all(f.result(5) == [[]] for f in futures)  # nothing accepted was lost
    finally:
        release.set()
        batcher.close()


def test_the_service_answers_429_with_retry_after_and_504_past_the_deadline(store_dir, tf_encoder, tmp_path):
    release = threading.Event()

    class Blocking(HybridSearcher):
        def search_batch(self, queries, options=None, /, **overrides):
            release.wait(10)
            return super().search_batch(queries, options, **overrides)

    svc = SearchService(
        QdrantEdgeStore(_copy(store_dir, tmp_path)),
        lambda s: Blocking(s, tf_encoder),
        batching=BatchingSettings(workers=1, window_s=0, max_batch=1, max_queue=1, timeout_s=1.0),
    )
    try:
        with serving(create_app(svc, ServiceSettings())) as u:

            async def run() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=u, timeout=10) as http:
                    return list(await asyncio.gather(*(http.post("/search", json={"query": q}) for q in QUERIES[:5])))

            answers = asyncio.run(run())
            statuses = sorted(r.status_code for r in answers)
            assert 429 in statuses and 504 in statuses and not any(s >= 500 and s != 504 for s in statuses)
            refused = next(r for r in answers if r.status_code == 429)
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"] == "Overloaded" and "\n" not in refused.json()["detail"]
            assert next(r for r in answers if r.status_code == 504).json()["error"] == "DeadlineExceeded"
            release.set()
    finally:
        release.set()
        svc.close()


def _copy(src, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_a_deadline_drops_the_queued_search():
    release = threading.Event()
    batcher = DynamicBatcher(
        lambda q, o: (release.wait(10), [[] for _ in q])[1], BatchingSettings(workers=1, window_s=0, timeout_s=0.2)
    )
    try:
        with pytest.raises(DeadlineExceeded):
            batcher.search(["q"], SearchOptions())
    finally:
        release.set()
        batcher.close()


@pytest.mark.parametrize(
    "body",
    [
        {"query": "wing", "top_k": "10"},
        {"query": "wing", "top_k": True},
        {"query": "wing", "top_k": 10.0},
        {"query": "wing", "explain": "yes"},
        {"query": "wing", "rerank": 1},
        {"query": "wing", "mode": None},
        {"query": "wing", "weights": {"sparse": "1"}},
        {"query": 7},
        {"queries": ["wing"]},
    ],
)
def test_request_fields_are_typed_strictly(url, body):
    r = httpx.post(url + "/search", json=body, timeout=30)
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error", "kind", "detail"} and "\n" not in r.json()["detail"]


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_weights_are_refused(url, weight):
    body = '{"query": "wing", "weights": {"sparse": ' + weight + "}}"
    r = httpx.post(url + "/search", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    assert "weights.sparse" in r.json()["detail"]
