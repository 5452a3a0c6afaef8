"""End-to-end on real data: index a Cranfield subset into Qdrant Edge, search it every way."""

import csv
import itertools
import json
from collections import Counter

import numpy as np
import pytest

from sparsehybrid import Document, HybridSearcher, Indexer, open_store
from sparsehybrid.connectors import EncoderMismatchError, FilterError, VectorStore
from sparsehybrid.ingestion.sources import open_source

N_QUERIES = 12


@pytest.fixture(scope="module")
def cranfield_subset(cranfield):
    """The first queries, every document judged relevant to them, and 120 other documents."""
    queries = [json.loads(line) for line in (cranfield / "queries.jsonl").read_text().splitlines()][:N_QUERIES]
    qrels: dict[str, dict[str, int]] = {}
    with open(cranfield / "qrels" / "test.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    wanted = {d for q in queries for d, s in qrels.get(q["_id"], {}).items() if s > 0}
    docs = [d for d in open_source(cranfield) if isinstance(d, Document)]
    subset = [d for d in docs if d.id in wanted] + [d for d in docs if d.id not in wanted][:120]
    for i, d in enumerate(subset):
        d.metadata = {"half": "a" if i % 2 == 0 else "b", "n": i}
    return subset, queries, qrels


@pytest.fixture(scope="module")
def index(cranfield_subset, splade, minilm, tmp_path_factory):
    docs, _, _ = cranfield_subset
    store = open_store(f"qdrant-edge://{tmp_path_factory.mktemp('search')}/idx")
    stats = Indexer(store, splade, minilm, batch_size=64).index(docs)
    assert stats.added == len(docs) and not stats.rejected
    yield store, stats
    store.close()


@pytest.fixture(scope="module")
def searcher(index, splade, minilm):
    return HybridSearcher(index[0], splade, minilm)


def _judged_relevant(hits, qrels, qid):
    return [h.doc_id for h in hits if qrels.get(qid, {}).get(h.doc_id, 0) > 0]


def test_hybrid_search_returns_judged_relevant_documents(searcher, cranfield_subset):
    _, queries, qrels = cranfield_subset
    found = 0
    for q in queries:
        hits = searcher.search(q["text"], top_k=10, mode="hybrid")
        assert len(hits) == 10 and len({h.doc_id for h in hits}) == 10
        found += bool(_judged_relevant(hits, qrels, q["_id"]))
    # On Cranfield, hybrid retrieval puts a judged-relevant document in the top 10 for nearly every query.
    assert found >= N_QUERIES - 2


def test_every_mode_works_and_hybrid_fuses_all_three(searcher, cranfield_subset):
    _, queries, _ = cranfield_subset
    text = queries[0]["text"]
    for mode in ("sparse", "dense", "bm25"):
        hits = searcher.search(text, top_k=5, mode=mode)
        assert [e.retriever for e in hits[0].explanation.retrievers] == [mode]
        assert hits[0].explanation.fusion is None
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    hits = searcher.search(text, top_k=5, mode="hybrid")
    assert hits[0].explanation.fusion == "rrf"
    assert {e.retriever for e in hits[0].explanation.retrievers} == {"sparse", "dense", "bm25"}
    # The fused score is the RRF sum of the reported ranks.
    assert hits[0].score == pytest.approx(sum(1 / (60 + e.rank) for e in hits[0].explanation.retrievers), rel=1e-6)


def test_hits_explain_sparse_matches_with_decoded_tokens(searcher):
    hits = searcher.search("boundary layer transition on a flat plate", top_k=3, mode="dense")
    tokens = [t for t, _ in hits[0].explanation.sparse_tokens]
    assert tokens, "even dense-only hits get their sparse overlap explained"
    assert any(t in ("boundary", "layer", "transition", "plate", "flat") for t in tokens)


def test_filter_restricts_results(searcher, index):
    hits = searcher.search("heat transfer", top_k=20, mode="hybrid", filter={"half": "b"})
    assert hits and all(h.metadata["half"] == "b" for h in hits)
    hits = searcher.search("heat transfer", top_k=20, mode="sparse", filter={"n": {"lt": 10}})
    assert hits and all(h.metadata["n"] < 10 for h in hits)
    with pytest.raises(FilterError, match="not a metadata field"):
        searcher.search("heat transfer", filter={"lang": "en"})


def test_mismatched_encoder_is_refused(index, minilm, tmp_path):
    from sparsehybrid.encoders.dense import DenseEncoder
    from sparsehybrid.encoders.sparse import SparseEncoder

    store, _ = index
    other = tmp_path / "other-splade"
    SparseEncoder(max_length=64).model.save(str(other))  # same weights, different model identity
    with pytest.raises(EncoderMismatchError, match="sparse encoder mismatch"):
        HybridSearcher(store, SparseEncoder(str(other)), None)
    with pytest.raises(EncoderMismatchError, match="dense encoder mismatch"):
        HybridSearcher(store, None, DenseEncoder(str(other)))


def test_reindexing_is_idempotent_and_incremental(index, cranfield_subset, splade, minilm):
    store, first = index
    docs, _, _ = cranfield_subset
    before = store.count()
    again = Indexer(store, splade, minilm).index(docs)
    assert again.unchanged == len(docs) and again.encoded == 0
    forced = Indexer(store, splade, minilm, skip_unchanged=False).index(docs[:10])
    assert forced.updated == 10
    assert store.count() == before == first.chunks


def test_bad_queries_get_clear_errors(searcher):
    with pytest.raises(ValueError, match="empty"):
        searcher.search("   ")
    with pytest.raises(ValueError, match="unknown mode"):
        searcher.search("x", mode="fuzzy")
    with pytest.raises(ValueError, match="needs a reranker"):
        searcher.search("x", rerank=True)
    # Query-DSL syntax is just text.
    assert searcher.search('title:"wing" OR {"match_all": {}} AND *', top_k=3)


def test_native_fusion_matches_client_side_rrf(searcher, index, splade, minilm):
    store, _ = index
    text = "pressure distribution on a cone at supersonic speed"
    client = searcher.search(text, top_k=10, mode="hybrid", candidates=100)
    native = store.search_fused(
        sparse=splade.encode_query([text])[0], dense=minilm.encode_query([text])[0], text=text, limit=10, candidates=100
    )
    # The engine fuses chunks, we fuse documents (best chunk per retriever): the heads agree.
    native_docs = list(dict.fromkeys(p.doc_id for p in native))
    assert native_docs[:3] == [h.doc_id for h in client][:3]


def test_recorded_fusion_is_the_default_until_a_query_overrides_it(index, splade, minilm):
    """What `sparsehybrid tune` records is what a new searcher (and so the CLI) uses."""
    store = index[0]
    text = "boundary layer transition on a flat plate"
    plain = HybridSearcher(store, splade, minilm).search(text, top_k=10)
    dense_only = HybridSearcher(store, splade, minilm).search(text, top_k=10, mode="dense")
    try:
        store.save_fusion({"method": "rrf", "k": 60, "weights": {"sparse": 0.0, "dense": 1.0, "bm25": 0.0}})
        on_disk = json.loads((store.path / "sparsehybrid.json").read_text())
        assert on_disk["fusion"]["weights"] == {"sparse": 0.0, "dense": 1.0, "bm25": 0.0}
        tuned = HybridSearcher(store, splade, minilm)
        assert (tuned.fusion, tuned.rrf_k, tuned.weights) == ("rrf", 60, {"sparse": 0.0, "dense": 1.0, "bm25": 0.0})
        hits = tuned.search(text, top_k=10)
        assert [h.doc_id for h in hits] == [h.doc_id for h in dense_only]
        assert set(hits.timing.retrieve) == {"dense"}  # weight 0: not queried at all
        overridden = tuned.search(text, top_k=10, weights={})
        assert [h.doc_id for h in overridden] == [h.doc_id for h in plain]
        with pytest.raises(ValueError, match="every fusion weight is 0"):
            tuned.search(text, weights={"sparse": 0, "dense": 0, "bm25": 0})
    finally:
        store.save_fusion(None)
    assert HybridSearcher(store, splade, minilm).weights == {}


def test_candidates_carry_only_doc_ids_and_shown_hits_are_read_whole_in_one_get(index, splade, minilm):
    """Reading back every candidate's payload and sparse vector costs more than the search itself:
    ranking reads ``doc_id`` only, the shown hits' payloads (and vectors, to explain) come after."""
    store = index[0]
    calls: list[tuple[str, object]] = []

    searcher = HybridSearcher(store, splade, minilm)
    search_batch, get = store.search_batch, store.get

    def spy_search_batch(queries):
        calls.extend(("search_sparse", q.with_sparse, q.fields) for q in queries if q.retriever == "sparse")
        return search_batch(queries)

    def spy_get(ids, with_sparse=False):
        calls.append(("get", len(ids)))
        return get(ids, with_sparse=with_sparse)

    query = "boundary layer transition on a flat plate"
    store.partial_payloads = False  # the reference: whole payloads for every candidate
    reference = [(h.doc_id, h.score, h.text, h.chunk, h.span) for h in searcher.search(query, top_k=4)]
    del store.partial_payloads
    store.search_batch, store.get = spy_search_batch, spy_get
    try:
        hits = searcher.search(query, top_k=4, mode="hybrid", candidates=100)
        assert calls == [("search_sparse", False, ("doc_id",)), ("get", 4)]
        assert all(h.explanation.sparse_tokens and h.text and h.span for h in hits)
        assert [(h.doc_id, h.score, h.text, h.chunk, h.span) for h in hits] == reference
        calls.clear()
        hits = searcher.search(query, top_k=4, mode="sparse", explain=False)
        assert calls == [("search_sparse", False, ("doc_id",)), ("get", 4)]
        assert all(h.text and not h.explanation.sparse_tokens for h in hits)
    finally:
        del store.search_batch, store.get


def test_sparse_and_dense_query_vectors_are_made_at_once_with_the_same_hits(index, splade, minilm):
    """Hybrid queries encode their dense vector on another thread while the sparse one is made;
    the hits are exactly those of encoding one after the other."""
    import threading

    threads: list[str] = []

    class Watched:
        def __init__(self, encoder):
            self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim

        def encode_query(self, texts):
            threads.append(threading.current_thread().name)
            return self.encoder.encode_query(texts)

    searcher = HybridSearcher(index[0], splade, Watched(minilm))
    searcher.parallel_encode = True
    text = "heat transfer in laminar boundary layers"
    together = searcher.search(text, top_k=10, mode="hybrid", explain=False)
    assert len(threads) == 1 and threads[0].startswith("sparsehybrid-encode")
    searcher.parallel_encode = False
    apart = searcher.search(text, top_k=10, mode="hybrid", explain=False)
    assert threads[-1] == threading.current_thread().name
    assert [(h.doc_id, h.score) for h in together] == [(h.doc_id, h.score) for h in apart]


# -- search_batch ------------------------------------------------------------------------------
class OneAtATime:
    """An encoder that encodes a list of queries one by one (counting the list calls): its batch
    vectors are bit-identical to single-query ones, so a batch must reproduce ``search`` exactly.
    (A real encoder's padded batch differs in the last float bits; see the test after.)"""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_query(self, texts):
        self.calls += 1
        rows = [self.inner.encode_query([t])[0] for t in texts]
        return np.stack(rows) if rows and isinstance(rows[0], np.ndarray) else rows


def assert_same_hits(got, want, what):
    """Equal hits (ids, scores, texts, spans, explanations) in equal order, except that hits with
    equal scores may come in either order, and differ at the cut-off, when the engine fused them
    (its RRF breaks ties by no fixed rule: two identical ``search`` calls can differ there too)."""
    assert [h.score for h in got] == [h.score for h in want], what
    runs = [list(g) for _, g in itertools.groupby(range(len(want)), key=lambda i: want[i].score)]
    for n, run in enumerate(runs):
        g, w = {got[i].doc_id: got[i] for i in run}, {want[i].doc_id: want[i] for i in run}
        if len(run) == 1 or n < len(runs) - 1:
            assert g == w, what
        else:
            assert all(g[d] == w[d] for d in g.keys() & w.keys()), what


BATCH_OPTIONS = [
    {},
    {"explain": False},  # native fusion where the collection allows
    {"explain": False, "candidates": 20, "top_k": 5},
    {"mode": "sparse"},
    {"mode": "dense", "top_k": 3},
    {"mode": "bm25"},
    {"mode": "bm25", "explain": False},
    {"filter": {"half": "a"}},
    {"filter": {"n": {"gte": 40}}, "explain": False},
    {"fusion": "zscore", "top_k": 20},
    {"fusion": "weighted", "weights": {"sparse": 2.0, "bm25": 0.0}},
    {"fusion": "dbsf", "explain": False, "filter": {"half": "b"}},
    {"rrf_k": 10, "weights": {"dense": 0.0}, "explain": False},
    {"weights": {"sparse": 1.5}, "candidates": 30},
]


@pytest.mark.parametrize(
    "options", BATCH_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults"
)
def test_search_batch_equals_search_per_query(index, splade, minilm, cranfield_subset, options):
    _, queries, _ = cranfield_subset
    texts = [q["text"] for q in queries] + ["zzzqqq unknownword"]
    searcher = HybridSearcher(index[0], OneAtATime(splade), OneAtATime(minilm))
    batch = searcher.search_batch(texts, **options)
    assert len(batch) == len(texts)
    for text, got in zip(texts, batch):
        assert_same_hits(got, searcher.search(text, **options), (text, options))
    timing = batch[0].timing  # the batch's: one store call for every retrieval of every query
    assert all(r.timing is timing for r in batch) and list(timing.retrieve) == ["batch"]
    assert timing.total >= timing.encode + timing.retrieve["batch"]


@pytest.mark.parametrize(
    "options",
    [
        {"explain": False},
        {"explain": False, "candidates": 20, "top_k": 5, "filter": {"half": "a"}},
        {"explain": False, "rrf_k": 10, "weights": {"dense": 0.0}},
    ],
)
def test_search_batch_equals_search_with_engine_fusion(index, splade, minilm, cranfield_subset, monkeypatch, options):
    """The engine-fused path (single-chunk collections): the subset has multi-chunk documents, so
    it is taken here by marking the collection single-chunk (both paths then fuse chunks alike)."""
    store = index[0]
    monkeypatch.setattr(store.schema, "multi_chunk", False)
    texts = [q["text"] for q in cranfield_subset[1]]
    searcher = HybridSearcher(store, OneAtATime(splade), OneAtATime(minilm))
    assert searcher._fuses_natively(searcher.retrievers, "rrf", {}, explain=False)
    for text, got in zip(texts, searcher.search_batch(texts, **options)):
        want = searcher.search(text, **options)
        assert "fused" in searcher.last_timing.retrieve
        assert_same_hits(got, want, (text, options))


class ShardSpy:
    """Counts the Qdrant Edge shard calls a search makes."""

    def __init__(self, shard):
        self.shard, self.calls = shard, Counter()

    def __getattr__(self, name):
        method = getattr(self.shard, name)

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


@pytest.mark.parametrize(
    ("options", "single_chunk", "expected"),
    [
        ({}, False, {"query_batch": 1, "retrieve": 1}),  # retrievals, then the shown hits' payloads and vectors
        ({"explain": False}, True, {"query_batch": 1}),  # one engine-fused request per query, in one batch
        ({"explain": False}, False, {"query_batch": 1, "retrieve": 1}),
        ({"fusion": "zscore", "explain": False}, False, {"query_batch": 1, "retrieve": 1}),
        ({"mode": "bm25"}, False, {"query_batch": 1, "retrieve": 1}),
    ],
)
def test_search_batch_is_one_engine_batch_call_and_one_encode_per_encoder(
    index, splade, minilm, cranfield_subset, monkeypatch, options, single_chunk, expected
):
    store = index[0]
    if single_chunk:
        monkeypatch.setattr(store.schema, "multi_chunk", False)
    texts = [q["text"] for q in cranfield_subset[1]]
    sparse, dense = OneAtATime(splade), OneAtATime(minilm)
    searcher = HybridSearcher(store, sparse, dense)
    spy = ShardSpy(store.shard)
    monkeypatch.setattr(store, "_shard", spy)
    results = searcher.search_batch(texts, **options)
    assert all(results) and spy.calls == expected
    uses_sparse = options.get("mode", "hybrid") == "hybrid" or options.get("explain", True)
    assert (sparse.calls, dense.calls) == (int(uses_sparse), int(options.get("mode", "hybrid") == "hybrid"))
    spy.calls.clear()
    searcher.search(texts[0], **options)
    # search is a batch of one whose requests go one by one (so its timing is per retriever)
    requests = 1 if single_chunk or options.get("mode") == "bm25" else len(searcher.retrievers)
    assert spy.calls["query_batch"] == requests == len(searcher.last_timing.retrieve)


def test_search_batch_with_real_batched_encoding_matches_search(searcher, cranfield_subset):
    """Real encoders pad a batch, which moves scores in the last float bits, never the ranking here."""
    texts = [q["text"] for q in cranfield_subset[1]]
    for options in ({}, {"explain": False}, {"mode": "dense"}):
        for text, got in zip(texts, searcher.search_batch(texts, **options)):
            want = searcher.search(text, **options)
            assert [h.doc_id for h in got] == [h.doc_id for h in want], (text, options)
            assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-5)


def test_search_batch_checks_like_search(searcher):
    assert searcher.search_batch([]) == []
    with pytest.raises(ValueError, match="empty"):
        searcher.search_batch(["flow", " "])
    with pytest.raises(ValueError, match="top_k"):
        searcher.search_batch(["flow"], top_k=0)
    with pytest.raises(FilterError):
        searcher.search_batch(["flow"], filter={"nope": 1})
    with pytest.raises(ValueError, match="reranker"):
        searcher.search_batch(["flow"], rerank=True)


def test_search_batch_on_a_store_without_a_batch_request_loops(index, splade, minilm, cranfield_subset):
    """The protocol's default (one search per request) answers as Qdrant Edge's query_batch does."""
    store = index[0]
    texts = [q["text"] for q in cranfield_subset[1]][:4]
    searcher = HybridSearcher(store, OneAtATime(splade), OneAtATime(minilm))
    native = searcher.search_batch(texts, explain=False, fusion="zscore")
    store.search_batch = lambda queries: VectorStore.search_batch(store, queries)
    try:
        looped = searcher.search_batch(texts, explain=False, fusion="zscore")
    finally:
        del store.search_batch
    for got, want in zip(looped, native):
        assert_same_hits(got, want, "default loop")
