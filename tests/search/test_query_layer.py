"""The query layer's contract: timings travel with results, weights are checked, and the
engine-side fusion path returns what client-side fusion returns."""

from __future__ import annotations

import threading

import pytest

from sparsehybrid import HybridSearcher, Indexer, open_store
from sparsehybrid.search import SearchResults
from tests.support import as_documents, cranfield_rows

QUERIES = [
    "flow over a wing in a slipstream",
    "heat transfer in hypersonic boundary layers",
    "buckling of cylindrical shells under pressure",
    "similarity laws for aerodynamic heating",
]


@pytest.fixture(scope="module")
def short_docs_store(cranfield, tf_encoder, tmp_path_factory):
    """Single-chunk documents: the case where the engine may fuse for us."""
    rows = [dict(r, text=" ".join(r["text"].split()[:80])) for r in cranfield_rows(cranfield, 150)]
    store = open_store(f"qdrant-edge://{tmp_path_factory.mktemp('q')}/idx")
    Indexer(store, tf_encoder, bm25=True, batch_size=50).index(as_documents(rows))
    yield store
    store.close()


def test_results_carry_their_own_timing_and_threads_do_not_see_each_others(short_docs_store, tf_encoder):
    searcher = HybridSearcher(short_docs_store, tf_encoder)
    results = searcher.search(QUERIES[0], top_k=5)
    assert isinstance(results, SearchResults) and len(results) == 5
    assert results.timing.total > 0 and set(results.timing.retrieve) == {"sparse", "bm25"}
    seen: dict[str, float] = {}

    def other_thread() -> None:
        seen["other"] = searcher.search(QUERIES[1], top_k=3, mode="bm25").timing.total
        seen["other_last"] = searcher.last_timing.total

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen["other_last"] == seen["other"]
    assert searcher.last_timing is results.timing  # this thread's last search, untouched by the other


def test_bm25_only_search_encodes_no_query(short_docs_store, tf_encoder, monkeypatch):
    searcher = HybridSearcher(short_docs_store, tf_encoder)
    monkeypatch.setattr(tf_encoder, "encode_query", lambda texts: pytest.fail("BM25 needs no sparse query"))
    assert searcher.search(QUERIES[2], mode="bm25", explain=False)


def test_misspelt_retriever_names_in_weights_are_refused(short_docs_store, tf_encoder):
    with pytest.raises(ValueError, match=r"unknown retriever\(s\) in weights: \['dnese'\]"):
        HybridSearcher(short_docs_store, tf_encoder, weights={"dnese": 5})
    searcher = HybridSearcher(short_docs_store, tf_encoder)
    with pytest.raises(ValueError, match="dnese"):
        searcher.search(QUERIES[0], weights={"dnese": 5})


def test_engine_side_fusion_returns_what_client_side_fusion_returns(short_docs_store, tf_encoder):
    assert short_docs_store.schema.multi_chunk is False
    searcher = HybridSearcher(short_docs_store, tf_encoder)
    calls = []
    original = short_docs_store.search_batch

    def spy(queries):
        calls.extend(q for q in queries if q.retriever == "fused")
        return original(queries)

    short_docs_store.search_batch = spy
    try:
        for q in QUERIES:
            client = searcher.search(q, top_k=10, explain=True)
            native = searcher.search(q, top_k=10, explain=False)
            assert [h.doc_id for h in native] == [h.doc_id for h in client]
            assert [h.score for h in native] == pytest.approx([h.score for h in client], rel=1e-6)  # engine: float32
    finally:
        del short_docs_store.search_batch
    assert len(calls) == len(QUERIES)  # explain=False went through the engine, explain=True did not


def test_multi_chunk_collections_are_recorded_and_fused_client_side(tf_encoder, tmp_path):
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    long_text = " ".join(["boundary layer transition on a flat plate at high speed"] * 200)
    Indexer(store, tf_encoder, bm25=True).index(as_documents([{"_id": "long", "text": long_text}]))
    assert store.schema.multi_chunk is True
    store.close()
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    assert store.schema.multi_chunk is True  # persisted with the schema
    original = store.search_batch

    def no_fused(queries):
        assert all(q.retriever != "fused" for q in queries), "chunked documents must be fused client-side"
        return original(queries)

    store.search_batch = no_fused
    assert HybridSearcher(store, tf_encoder).search("boundary layer", explain=False)
    store.close()
