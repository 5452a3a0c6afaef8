"""One conformance suite every store backend passes (the Haystack document-store base-test pattern).

A backend's test module subclasses :class:`StoreConformance` and defines a ``store`` fixture that
yields a fresh, empty store (no collection yet) and closes it afterwards. Class attributes
declare what differs legitimately between backends:

- ``sparse_rtol``: relative precision of stored sparse weights. Qdrant keeps float32 (1e-5);
  Lucene-based engines keep ~9 significant bits of each weight (relative error < 2**-8).
- ``dense_min_recall``: recall@10 of dense search against exact cosine search.

Everything runs on random vectors made here (no model), so the suite is fast.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import numpy as np
import pytest

from sparsehybrid.connectors import open_store
from sparsehybrid.connectors.base import CollectionSchema, EncoderMismatchError, StoreQuery, VectorStore
from sparsehybrid.connectors.filters import FilterError, matches, parse_filter
from sparsehybrid.fusion import reciprocal_rank_fusion
from sparsehybrid.types import Chunk, PointRecord, SparseVector

VOCAB = 2000
DIM = 32
RARE = "zyzzyva"
WORDS = [
    "wing",
    "flow",
    "shock",
    "boundary",
    "layer",
    "pressure",
    "heat",
    "transfer",
    "plate",
    "cylinder",
    "nozzle",
    "turbulent",
    "laminar",
    "supersonic",
    "subsonic",
    "mach",
    "number",
    "drag",
    "lift",
    "vortex",
    "wake",
    "jet",
    "stream",
    "blade",
    "rotor",
    "compressor",
]
KO_WORDS = ["한국어", "문서", "검색", "서울", "희소", "벡터"]
LANGS = ["en", "ko", "fr"]

SCHEMA = CollectionSchema(
    sparse_model="test/random-sparse",
    sparse_dim=VOCAB,
    dense_model="test/random-dense",
    dense_dim=DIM,
    bm25=True,
    bm25_avg_len=10.0,
)

# A Zipf-like token distribution, so documents and queries share tokens as real ones do.
_P = 1.0 / np.arange(1, VOCAB + 1) ** 0.8
_P /= _P.sum()


def random_sparse(rng: np.random.Generator, nnz: int) -> SparseVector:
    idx = rng.choice(VOCAB, size=nnz, replace=False, p=_P)
    val = rng.uniform(0.05, 3.0, size=nnz)
    return SparseVector(idx.tolist(), val.tolist())


def random_dense(rng: np.random.Generator) -> list[float]:
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def make_records(n: int, seed: int = 0, chunks_per_doc: int = 1, prefix: str = "doc") -> list[PointRecord]:
    """``n`` documents (each ``chunks_per_doc`` chunks) with varied metadata, some in Korean."""
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    records = []
    for i in range(n):
        lang = LANGS[i % 3]
        words = KO_WORDS if lang == "ko" else WORDS
        meta = {
            "lang": lang,
            "year": 1990 + i % 31,
            "flag": i % 4 == 0,
            "tags": sorted(pyrng.sample(["red", "green", "blue", "빨강"], 2)),
            "group": {"name": f"g{i % 5}"},
        }
        if lang == "ko":
            meta["city"] = "서울"
        for c in range(chunks_per_doc):
            text = " ".join(pyrng.choice(words) for _ in range(pyrng.randint(5, 15)))
            if i % 23 == 0:
                text += f" {RARE}" * (1 + i % 3)
            chunk = Chunk(
                doc_id=f"{prefix}-{i}",
                chunk=c,
                text=text,
                start=c * 100,
                end=c * 100 + len(text),
                title=f"제목 {i}" if lang == "ko" else f"Title {i}",
                metadata=meta,
                content_hash=f"hash-{i}",
                n_chunks=chunks_per_doc,
            )
            records.append(PointRecord(chunk, random_sparse(rng, int(rng.integers(20, 60))), random_dense(rng)))
    return records


FILTERS = [
    {"lang": "en"},
    {"lang": {"eq": "ko"}},
    {"lang": ["en", "fr"]},
    {"lang": {"in": ["ko"]}},
    {"year": {"gte": 2000, "lt": 2010}},
    {"year": {"gt": 2015}},
    {"year": 1995},
    {"flag": True},
    {"flag": False},
    {"flag": {"in": [True]}},
    {"year": [1995, 2001]},
    {"tags": "빨강"},
    {"tags": ["red", "blue"]},
    {"group.name": "g3"},
    {"city": "서울"},
    {"lang": "en", "flag": True, "year": {"lte": 2005}},
]


def assert_same_ranking(got: list, want: list, what: object = "") -> None:
    """The same points with the same scores, payloads and vectors, in the same order, except that
    points with equal scores may come in any order and, at the cut-off, be different ones: the
    engine breaks ties by no fixed rule (two identical RRF requests to Qdrant can differ there)."""
    assert [p.score for p in got] == [p.score for p in want], what
    runs = [list(g) for _, g in itertools.groupby(range(len(want)), key=lambda i: want[i].score)]
    for n, run in enumerate(runs):
        g = {got[i].id: (got[i].payload, got[i].sparse) for i in run}
        w = {want[i].id: (want[i].payload, want[i].sparse) for i in run}
        if n < len(runs) - 1:
            assert g == w, what
        else:  # the last tie may be cut at the limit: whatever both chose, each point is right
            assert all(g[i] == w[i] for i in g.keys() & w.keys()), what


class StoreConformance:
    """Subclass with a ``store`` fixture yielding a fresh empty store."""

    sparse_rtol: float = 1e-5
    dense_min_recall: float = 0.9

    # -- hooks -------------------------------------------------------------------------------
    def reopen(self, store: VectorStore) -> VectorStore:
        """Close ``store`` and open it again by its (credential-free) URL."""
        url = store.url
        store.close()
        return open_store(url)

    def settle(self, store: VectorStore) -> None:
        """Wait until writes are searchable (a no-op where writes are immediately visible)."""

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _load(store: VectorStore, records: list[PointRecord]) -> None:
        store.ensure_schema(SCHEMA)
        assert store.upsert(records) == len(records)

    # -- create, open, schema ----------------------------------------------------------------
    def test_new_store_is_empty(self, store: VectorStore):
        assert store.schema is None
        assert store.count() == 0
        assert list(store.iter_points()) == []

    def test_schema_created_persisted_and_reopened(self, store: VectorStore):
        created = store.ensure_schema(SCHEMA)
        assert (created.sparse_model, created.sparse_dim, created.dense_model, created.dense_dim) == (
            SCHEMA.sparse_model,
            VOCAB,
            SCHEMA.dense_model,
            DIM,
        )
        store.upsert(make_records(12))
        assert {"lang", "year", "flag", "tags", "group.name", "city"} <= set(store.schema.metadata_fields)
        reopened = self.reopen(store)
        try:
            s = reopened.schema
            assert s is not None
            assert (s.sparse_model, s.sparse_dim, s.dense_model, s.dense_dim, s.bm25) == (
                SCHEMA.sparse_model,
                VOCAB,
                SCHEMA.dense_model,
                DIM,
                True,
            )
            assert s.metadata_fields["year"] == "number" and s.metadata_fields["lang"] == "keyword"
            assert reopened.count() == 12
            assert reopened.ensure_schema(SCHEMA).sparse_model == SCHEMA.sparse_model
        finally:
            reopened.close()

    def test_tuned_fusion_is_recorded_kept_by_later_writes_and_reopened(self, store: VectorStore):
        store.ensure_schema(SCHEMA)
        setting = {"method": "rrf", "k": 30, "weights": {"sparse": 0.5, "dense": 2.0, "bm25": 0.0}}
        assert store.save_fusion(setting).fusion == setting
        store.upsert(make_records(3))  # learning metadata fields saves the schema again
        reopened = self.reopen(store)
        try:
            assert reopened.schema is not None and reopened.schema.fusion == setting
            assert reopened.save_fusion(None).fusion is None
        finally:
            reopened.close()

    @pytest.mark.parametrize(
        "change",
        [
            {"dense_dim": DIM + 1},
            {"dense_model": "other/dense"},
            {"sparse_model": "other/sparse"},
            {"sparse_dim": VOCAB + 1},
        ],
    )
    def test_encoder_mismatch_refused(self, store: VectorStore, change):
        store.ensure_schema(SCHEMA)
        wrong = CollectionSchema.from_dict({**SCHEMA.to_dict(), **change})
        with pytest.raises(EncoderMismatchError):
            store.ensure_schema(wrong)

    def test_encoder_mismatch_refused_after_reopen(self, store: VectorStore):
        store.ensure_schema(SCHEMA)
        reopened = self.reopen(store)
        try:
            with pytest.raises(EncoderMismatchError, match="dense"):
                reopened.ensure_schema(CollectionSchema.from_dict({**SCHEMA.to_dict(), "dense_dim": 7}))
        finally:
            reopened.close()

    # -- writes ------------------------------------------------------------------------------
    def test_upsert_is_idempotent(self, store: VectorStore):
        records = make_records(30)
        self._load(store, records)
        store.upsert(records)
        self.settle(store)
        assert store.count() == 30
        assert len({p.id for p in store.iter_points()}) == 30

    def test_upsert_replaces_payload(self, store: VectorStore):
        records = make_records(5)
        self._load(store, records)
        changed = make_records(5, seed=1)
        for r in changed:
            r.chunk.text = "replaced " + r.chunk.text
        store.upsert(changed)
        self.settle(store)
        got = store.get([r.id for r in changed])
        assert len(got) == 5 and all(p.payload["text"].startswith("replaced ") for p in got)

    def test_delete_points(self, store: VectorStore):
        records = make_records(20)
        self._load(store, records)
        gone = [records[3].id, records[7].id, "00000000-0000-0000-0000-000000000000"]
        store.delete_points(gone)
        self.settle(store)
        assert store.count() == 18
        assert store.get(gone) == []
        assert {p.id for p in store.iter_points()} == {r.id for r in records} - set(gone)

    def test_delete_documents_removes_every_chunk(self, store: VectorStore):
        records = make_records(6, chunks_per_doc=3)
        self._load(store, records)
        store.delete_documents(["doc-1", "doc-4", "no-such-doc"])
        self.settle(store)
        assert store.count() == 12
        assert {p.doc_id for p in store.iter_points()} == {"doc-0", "doc-2", "doc-3", "doc-5"}

    # -- reads -------------------------------------------------------------------------------
    def test_get_round_trips_payload_and_sparse(self, store: VectorStore):
        records = make_records(9)
        self._load(store, records)
        by_id = {r.id: r for r in records}
        got = store.get([records[0].id, records[1].id, records[2].id], with_sparse=True)
        assert len(got) == 3
        for p in got:
            r = by_id[p.id]
            assert p.payload == r.payload()
            assert p.sparse is not None
            have, want = p.sparse.as_dict(), r.sparse.as_dict()
            assert set(have) == set(want)
            assert all(abs(have[i] - want[i]) <= self.sparse_rtol * want[i] + 1e-7 for i in want)
        assert all(p.sparse is None for p in store.get([records[0].id]))

    def test_iter_points_pages_through_everything(self, store: VectorStore):
        records = make_records(40)
        self._load(store, records)
        seen = [p.id for p in store.iter_points(batch_size=7)]
        assert sorted(seen) == sorted(r.id for r in records)
        assert all(p.sparse is None and "doc_id" in p.payload for p in store.iter_points(batch_size=7))

    def test_document_states(self, store: VectorStore):
        records = make_records(4, chunks_per_doc=2)
        self._load(store, records)
        assert store.document_states() == {f"doc-{i}": (f"hash-{i}", 2) for i in range(4)}

    # -- filters -----------------------------------------------------------------------------
    def test_count_with_and_without_filter(self, store: VectorStore):
        records = make_records(90)
        self._load(store, records)
        assert store.count() == 90
        for spec in FILTERS:
            want = sum(matches(parse_filter(spec), r.chunk.metadata) for r in records)
            assert want > 0, spec  # every filter selects something, so a no-op filter would fail
            assert store.count(spec) == want, spec

    def test_filters_in_sparse_and_dense_search(self, store: VectorStore):
        records = make_records(90)
        self._load(store, records)
        rng = np.random.default_rng(7)
        q, d = random_sparse(rng, 40), random_dense(rng)
        for spec in FILTERS:
            conds = parse_filter(spec)
            allowed = [r for r in records if matches(conds, r.chunk.metadata)]
            got = store.search_sparse(q, 100, filter=spec)
            assert {p.id for p in got} <= {r.id for r in allowed}, spec
            assert len(got) == sum(1 for r in allowed if r.sparse.dot(q) > 0), spec
            dense = store.search_dense(d, 100, filter=spec)
            assert {p.id for p in dense} == {r.id for r in allowed}, spec

    def test_search_with_payload_fields_ranks_the_same(self, store: VectorStore):
        """``fields`` trims payloads (where the store allows), never the ranking."""
        records = make_records(60)
        self._load(store, records)
        self.settle(store)
        rng = np.random.default_rng(11)
        q, d = random_sparse(rng, 40), random_dense(rng)
        searches = [lambda **kw: store.search_sparse(q, 20, **kw), lambda **kw: store.search_dense(d, 20, **kw)]
        if "bm25" in store.capabilities:
            searches.append(lambda **kw: store.search_bm25(records[3].chunk.text, 20, **kw))
        for search in searches:
            full, light = search(), search(fields=("doc_id",))
            assert [(p.id, p.doc_id) for p in light] == [(p.id, p.doc_id) for p in full]
            assert [p.score for p in light] == pytest.approx([p.score for p in full])
            if store.partial_payloads:
                assert all(set(p.payload) == {"doc_id"} for p in light)

    def test_unknown_filter_field_refused(self, store: VectorStore):
        self._load(store, make_records(5))
        rng = np.random.default_rng(0)
        with pytest.raises(FilterError, match="langauge"):
            store.count({"langauge": "en"})
        with pytest.raises(FilterError):
            store.search_sparse(random_sparse(rng, 5), 5, filter={"langauge": "en"})
        with pytest.raises(FilterError):
            store.search_dense(random_dense(rng), 5, filter={"nope": {"gt": 1}})

    # -- retrieval ---------------------------------------------------------------------------
    def test_sparse_search_is_exact_dot_product(self, store: VectorStore):
        records = make_records(300, seed=3)
        self._load(store, records)
        rng = np.random.default_rng(11)
        for _ in range(12):
            q = random_sparse(rng, int(rng.integers(5, 30)))
            truth = {r.id: r.sparse.dot(q) for r in records}
            ranked = sorted(truth.values(), reverse=True)
            got = store.search_sparse(q, 10)
            assert len(got) == min(10, sum(1 for s in ranked if s > 0))
            kth = ranked[len(got) - 1]
            for p in got:
                t = truth[p.id]
                assert abs(p.score - t) <= self.sparse_rtol * t + 1e-6, (p.score, t)
                assert t >= kth * (1 - 2 * self.sparse_rtol) - 1e-6  # nothing better was missed
            assert all(a.score >= b.score - 1e-6 for a, b in itertools.pairwise(got))

    def test_dense_search_recall_against_exact_cosine(self, store: VectorStore):
        records = make_records(300, seed=4)
        self._load(store, records)
        matrix = np.array([r.dense for r in records])
        ids = [r.id for r in records]
        rng = np.random.default_rng(12)
        hits = 0
        for _ in range(20):
            d = np.array(random_dense(rng))
            sims = matrix @ d
            exact = {ids[j] for j in np.argsort(-sims)[:10]}
            got = store.search_dense(d.tolist(), 10)
            assert len(got) == 10
            by_id = dict(zip(ids, sims))
            for p in got:  # scores are cosine similarities
                assert abs(p.score - by_id[p.id]) < 1e-3
            hits += len(exact & {p.id for p in got})
        assert hits / 200 >= self.dense_min_recall

    def test_bm25_where_native(self, store: VectorStore):
        if "bm25" not in store.capabilities:
            pytest.skip(f"{type(store).__name__} has no native BM25")
        records = make_records(120, seed=5)
        self._load(store, records)
        holders = {r.id for r in records if RARE in r.chunk.text.split()}
        got = store.search_bm25(RARE, 50)
        assert {p.id for p in got} == holders
        assert all(a.score >= b.score for a, b in itertools.pairwise(got))
        assert all(p.score > 0 for p in got)
        filtered = store.search_bm25(RARE, 50, filter={"lang": "en"})
        assert {p.id for p in filtered} == {
            r.id for r in records if r.id in holders and r.chunk.metadata["lang"] == "en"
        }

    def test_hybrid_fusion_matches_client_side_rrf(self, store: VectorStore):
        records = make_records(200, seed=6)
        self._load(store, records)
        rng = np.random.default_rng(13)
        for _ in range(5):
            q, d = random_sparse(rng, 25), random_dense(rng)
            rankings = {
                "sparse": [(p.id, p.score) for p in store.search_sparse(q, 40)],
                "dense": [(p.id, p.score) for p in store.search_dense(d, 40)],
            }
            expected = {it.id: it.score for it in reciprocal_rank_fusion(rankings, k=60)}
            try:  # native fusion, or the connector's client-side fallback: same numbers either way
                got = store.search_fused(sparse=q, dense=d, limit=10, candidates=40, k=60)
            except NotImplementedError:
                assert not store.native_fusion
                return
            assert len(got) == 10
            tenth = sorted(expected.values(), reverse=True)[9]
            for p in got:
                assert p.id in expected
                assert abs(p.score - expected[p.id]) < 1e-6, "fused score is not RRF(k=60) over the same rankings"
                assert expected[p.id] >= tenth - 1e-9
            assert all(a.score >= b.score - 1e-9 for a, b in itertools.pairwise(got))

    def test_hybrid_with_text_and_filter(self, store: VectorStore):
        records = make_records(120, seed=8)
        self._load(store, records)
        rng = np.random.default_rng(14)
        q, d = random_sparse(rng, 25), random_dense(rng)
        text = RARE if "bm25" in store.capabilities else None
        try:
            got = store.search_fused(sparse=q, dense=d, text=text, limit=15, candidates=30, filter={"lang": "en"})
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} has no search_fused (fusion runs in sparsehybrid.fusion)")
        by_id = {r.id: r for r in records}
        assert 0 < len(got) <= 15 and len({p.id for p in got}) == len(got)
        assert all(by_id[p.id].chunk.metadata["lang"] == "en" for p in got)
        if text:
            rare_en = {r.id for r in records if RARE in r.chunk.text.split() and r.chunk.metadata["lang"] == "en"}
            bm25_top = store.search_bm25(RARE, 1, filter={"lang": "en"})[0].id
            assert bm25_top in rare_en and bm25_top in {p.id for p in got}

    def test_search_batch_returns_what_each_search_returns(self, store: VectorStore):
        """A batch (native or the default loop) answers every query as its own ``search_*`` call."""
        records = make_records(120, seed=10)
        self._load(store, records)
        self.settle(store)
        rng = np.random.default_rng(15)
        q, d = random_sparse(rng, 25), random_dense(rng)
        queries = [
            StoreQuery("sparse", 20, sparse=q),
            StoreQuery("sparse", 7, sparse=q, filter={"lang": "en"}, fields=("doc_id",), with_sparse=True),
            StoreQuery("sparse", 5, sparse=SparseVector([], [])),  # finds nothing, sends nothing
            StoreQuery("dense", 15, dense=d, filter={"year": {"gte": 2000}}),
            StoreQuery("dense", 3, dense=np.array(d, dtype=np.float32), fields=("doc_id", "chunk")),
        ]
        if "bm25" in store.capabilities:
            queries += [StoreQuery("bm25", 10, text=RARE), StoreQuery("bm25", 10, text="the", filter={"lang": "en"})]
        if store.native_fusion:
            text = RARE if "bm25" in store.capabilities else None
            queries += [
                StoreQuery("fused", 10, sparse=q, dense=d, text=text, candidates=30),
                StoreQuery("fused", 5, sparse=q, dense=d, candidates=20, k=10, filter={"lang": "ko"}),
            ]
        batch = store.search_batch(queries)
        assert len(batch) == len(queries)
        for query, got in zip(queries, batch):
            assert_same_ranking(got, store.search_one(query), query)
        assert batch[0] and not batch[2]
        assert store.search_batch([]) == []
        with pytest.raises(FilterError):
            store.search_batch([StoreQuery("dense", 5, dense=d, filter={"langauge": "en"})])
        with pytest.raises(ValueError, match="needs a sparse vector"):
            StoreQuery("sparse", 5)
        with pytest.raises(ValueError, match="unknown retriever"):
            StoreQuery("splade", 5, sparse=q)

    # -- scale and text ----------------------------------------------------------------------
    def test_large_upsert_is_paged(self, store: VectorStore):
        records = make_records(2500, seed=9)
        for r in records:  # keep this test about paging, not vector volume
            r.sparse = r.sparse.top_k(8)
        self._load(store, records)
        self.settle(store)
        assert store.count() == 2500
        assert len({p.id for p in store.iter_points(batch_size=1000)}) == 2500
        assert store.count({"lang": "ko"}) == sum(1 for r in records if r.chunk.metadata["lang"] == "ko")

    def test_unicode_korean_round_trip(self, store: VectorStore):
        records = make_records(9)
        ko = [r for r in records if r.chunk.metadata["lang"] == "ko"]
        ko[0].chunk.text = "희소 벡터 검색은 한국어 문서에서도 동작한다 — ünïcödé ✓ 🚀"
        ko[0].chunk.metadata["note"] = '따옴표 "quoted" 와 역슬래시 \\ 도'
        self._load(store, records)
        got = store.get([ko[0].id])[0]
        assert got.payload["text"] == ko[0].chunk.text
        assert got.payload["title"] == ko[0].chunk.title
        assert got.payload["metadata"] == ko[0].chunk.metadata
        assert {p.id for p in store.search_dense(ko[0].dense, 20, filter={"city": "서울"})} == {r.id for r in ko}
        assert store.count({"note": '따옴표 "quoted" 와 역슬래시 \\ 도'}) == 1


def store_fixture_from(open_fn) -> Iterator[VectorStore]:
    """Helper for subclasses: yield ``open_fn()`` and close it afterwards."""
    store = open_fn()
    try:
        yield store
    finally:
        store.close()
