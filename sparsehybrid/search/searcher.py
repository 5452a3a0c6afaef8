"""The query layer: sparse, dense and BM25 retrieval, fusion, optional cross-encoder reranking.

A search is a short pipeline over :class:`Candidate` values, run for a batch of queries at once
(``search(q)`` is ``search_batch([q])[0]``): encode the queries (one call per encoder) → one
store batch request for every retrieval (chunks collapse to documents, best chunk wins) → fuse
→ read the shown hits' payloads in one ``get`` → rerank → build hits → explain. Fusion runs
client-side by default, so any backend works and every hit can say who found it at which rank.
With ``explain=False`` and plain RRF over a collection whose documents are single chunks, the
store fuses natively in one request instead (identical ranking, fewer round trips).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..connectors.base import BM25, DENSE, FUSED, SPARSE, CollectionSchema, StoreError, StoreQuery, VectorStore
from ..connectors.filters import parse_filter
from ..encoders.protocols import DenseQueryEncoder, PassageReranker, SparseQueryEncoder
from ..fusion import FusionSetting, fuse
from ..types import Explanation, Hit, RetrieverEvidence, ScoredPoint, SparseVector, join_title
from .options import RETRIEVERS, SearchOptions, check_query, check_weights
from .results import SearchResults, SearchTiming

#: The payload keys ranking needs (chunks collapse to documents); the rest is read for shown hits only.
CANDIDATE_FIELDS = ("doc_id",)


@dataclass
class Candidate:
    """A document on its way to becoming a hit: the chunk shown for it, its current score, and
    the evidence of each retriever that found it as {retriever: (rank, score)}."""

    point: ScoredPoint
    score: float
    evidence: dict[str, tuple[int, float]]
    rerank_score: float | None = None


@dataclass
class QueryVectors:
    """The query as each retriever needs it."""

    text: str
    sparse: SparseVector | None = None
    dense: Any = None


@dataclass(frozen=True)
class Plan:
    """A batch's checked options: the retrievers to query, the fusion and what to fetch."""

    options: SearchOptions
    names: list[str]
    method: str
    k: int
    weights: dict[str, float]

    @property
    def fetch(self) -> int:
        o = self.options
        return max(o.candidates, o.top_k, o.rerank_top if o.rerank else 0)


_ENCODE_POOL: ThreadPoolExecutor | None = None
_ENCODE_POOL_LOCK = threading.Lock()


def _encode_pool() -> ThreadPoolExecutor:
    """The threads that encode dense query vectors beside sparse ones (one pool per process)."""
    global _ENCODE_POOL
    with _ENCODE_POOL_LOCK:
        if _ENCODE_POOL is None:
            _ENCODE_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sparsehybrid-encode")
        return _ENCODE_POOL


def collapse_to_documents(points: Sequence[ScoredPoint]) -> list[ScoredPoint]:
    """Keep each document's best chunk, preserving rank order (inputs are best-first)."""
    best: dict[str, ScoredPoint] = {}
    for p in points:
        best.setdefault(p.doc_id, p)
    return list(best.values())


class HybridSearcher:
    """Search a store with whichever retrievers are configured.

    Args:
        store: any :class:`~sparsehybrid.connectors.VectorStore`.
        sparse / dense: encoders; they must match the ones the collection was built with.
        reranker: optional cross-encoder for ``rerank=True``.
        bm25: use the store's native BM25 in hybrid mode (default: when the store has it).
        fusion: ``rrf``, ``weighted`` (min-max), ``zscore`` or ``dbsf``; ``rrf_k`` and ``weights``
            tune it. Each one left as None comes from the collection's recorded fusion (what
            ``sparsehybrid tune`` chose), else plain RRF (k = 60, equal weights); each search
            may override all three. A retriever weighted 0 is not queried in hybrid mode.
        owns_store: close the store with the searcher.
    """

    def __init__(
        self,
        store: VectorStore,
        sparse: SparseQueryEncoder | None = None,
        dense: DenseQueryEncoder | None = None,
        reranker: PassageReranker | None = None,
        *,
        bm25: bool | None = None,
        fusion: str | None = None,
        rrf_k: int | None = None,
        weights: Mapping[str, float] | None = None,
        owns_store: bool = False,
    ):
        self.store, self.sparse, self.dense, self.reranker = store, sparse, dense, reranker
        #: Whether :meth:`close` closes the store (true when the searcher opened it from a URL).
        self.owns_store = owns_store
        schema = store.schema
        if schema is None:
            raise StoreError(f"{store.url} holds no collection yet: run `sparsehybrid index` first")
        schema.check_compatible(
            CollectionSchema(
                sparse_model=sparse.name if sparse else None,
                sparse_dim=sparse.vocab_size if sparse else None,
                dense_model=dense.name if dense else None,
                dense_dim=dense.dim if dense else None,
            )
        )
        native_bm25 = "bm25" in store.capabilities and schema.bm25
        if bm25 and not native_bm25:
            raise StoreError(f"{store.url} has no BM25 index")
        self.bm25 = native_bm25 if bm25 is None else bm25
        recorded = FusionSetting.from_dict(schema.fusion) if schema.fusion else FusionSetting()
        self.fusion = _known_fusion(fusion if fusion is not None else recorded.method)
        self.rrf_k = recorded.k if rrf_k is None else int(rrf_k)
        self.weights = check_weights(recorded.weights if weights is None else weights)
        self._last = threading.local()
        #: Encode a hybrid query's sparse and dense vectors at once (when there are cores for it).
        self.parallel_encode = (os.cpu_count() or 1) > 1

    def use_fusion(self, setting: FusionSetting) -> None:
        """Make ``setting`` the default fusion (a service follows a newly recorded one this way)."""
        weights = check_weights(setting.weights)
        self.fusion, self.rrf_k, self.weights = _known_fusion(setting.method), setting.k, weights

    @property
    def retrievers(self) -> list[str]:
        """The retrievers hybrid mode fuses, in a fixed order."""
        on = {"sparse": self.sparse is not None, "dense": self.dense is not None, "bm25": self.bm25}
        return [name for name in RETRIEVERS if on[name]]

    @property
    def last_timing(self) -> SearchTiming:
        """The timing of this thread's last search (prefer ``results.timing``)."""
        return getattr(self._last, "timing", SearchTiming())

    def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults:
        """Top ``top_k`` documents for ``query``: ``search_batch([query], ...)[0]``.

        ``options`` (a :class:`SearchOptions`) and ``overrides`` (its field names: ``top_k``,
        ``mode``, ``candidates``, ``rerank``, ``rerank_top``, ``filter``, ``explain``, ``fusion``,
        ``rrf_k``, ``weights``) say how; ``fusion``, ``rrf_k`` and ``weights`` left out come from
        the searcher's settings. A bad option raises a one-line ``ValueError``.
        """
        return self.search_batch([query], options, **overrides)[0]

    def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]:
        """:meth:`search` for each query (same options for all), in order, for throughput.

        Each encoder encodes all queries in one call, the store runs every retrieval in one
        batch request (:meth:`VectorStore.search_batch`: one ``query_batch`` on Qdrant Edge) and
        the shown hits' payloads are read in one ``get``. An encoder's batch may differ from its
        single-query output in the last float bits (padding changes the arithmetic), so scores
        can differ by ~1e-6. With one query the timing is that query's (per retriever); with
        several, every result carries the batch's timing.
        """
        t0 = time.perf_counter()
        texts = [check_query(q) for q in queries]
        plan = self._plan(SearchOptions.of(options, **overrides))
        if not texts:
            return []
        timing = SearchTiming()
        steps = [SearchTiming() for _ in texts]  # per query, summed into the batch's timing
        batch = self._encode_batch(texts, plan.names, timing)
        ranked = self._rank(batch, plan, timing, steps)
        hits = self._present(batch, ranked, plan, timing, steps)
        timing.fuse, timing.rerank = sum(x.fuse for x in steps), sum(x.rerank for x in steps)
        timing.explain += sum(x.explain for x in steps)
        timing.total = time.perf_counter() - t0
        self._last.timing = timing
        return [SearchResults(h, timing) for h in hits]

    def close(self) -> None:
        """Close the store if this searcher opened it (:func:`~sparsehybrid.open_searcher` with a URL)."""
        if self.owns_store:
            self.store.close()

    def __enter__(self) -> HybridSearcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps -----------------------------------------------------------------------------
    def _rank(
        self, batch: list[QueryVectors], plan: Plan, timing: SearchTiming, steps: list[SearchTiming]
    ) -> list[list[Candidate]]:
        """Every query's documents, best first: one store batch, then fusion per query (or the
        engine's fusion), then the shown hits' payloads when ranking read only ids."""
        native = self._fuses_natively(plan.names, plan.method, plan.weights, plan.options.explain)
        partial = not (native or plan.options.rerank) and self.store.partial_payloads
        fields = CANDIDATE_FIELDS if partial else None
        answers = self._retrieve_batch([self._store_queries(v, plan, fields, native) for v in batch], timing)
        if native:
            return [[Candidate(p, p.score, {}) for p in collapse_to_documents(points[0])] for points in answers]
        ranked = [
            self._fuse(dict(zip(plan.names, map(collapse_to_documents, points))), plan, step)
            for points, step in zip(answers, steps)
        ]
        if partial:
            with_sparse = plan.options.explain and self.sparse is not None
            self._read_payloads_batch([r[: plan.options.top_k] for r in ranked], with_sparse, timing)
        return ranked

    def _present(
        self,
        batch: list[QueryVectors],
        ranked: list[list[Candidate]],
        plan: Plan,
        timing: SearchTiming,
        steps: list[SearchTiming],
    ) -> list[list[Hit]]:
        """Each query's shown hits: reranked if asked, explained if asked."""
        o = plan.options
        with_tokens = o.explain and self.sparse is not None
        t = time.perf_counter()
        explained = self._explain_vectors(batch, plan.names) if with_tokens else batch
        timing.explain = time.perf_counter() - t
        shown_fusion = plan.method if len(plan.names) > 1 else None
        out = []
        for vectors, candidates, step in zip(explained, ranked, steps):
            if o.rerank:
                candidates = self._rerank(vectors.text, candidates, o.rerank_top, step)
            hits = [self._hit(c, shown_fusion) for c in candidates[: o.top_k]]
            if with_tokens and hits:
                self._explain_sparse(vectors, hits, candidates[: o.top_k], step)
            out.append(hits)
        return out

    def _fuse(
        self,
        rankings: dict[str, list[ScoredPoint]],
        plan: Plan,
        timing: SearchTiming,
    ) -> list[Candidate]:
        """One retriever: its ranking as is. Several: fused, each document shown by the chunk the
        first retriever (in fixed order) that found it ranked best."""
        t = time.perf_counter()
        names = plan.names
        if len(names) == 1:
            only = rankings[names[0]]
            ranked = [Candidate(p, p.score, {names[0]: (i + 1, p.score)}) for i, p in enumerate(only)]
        else:
            shown: dict[str, ScoredPoint] = {}
            for name in names:
                for p in rankings[name]:
                    shown.setdefault(p.doc_id, p)
            runs = {n: [(p.doc_id, p.score) for p in rankings[n]] for n in names}
            fused = fuse(plan.method, runs, k=plan.k, weights=plan.weights or None)
            ranked = [
                Candidate(shown[it.id], it.score, {n: (it.ranks[n], it.scores[n]) for n in it.ranks}) for it in fused
            ]
        timing.fuse = time.perf_counter() - t
        return ranked

    def _fuses_natively(self, names: list[str], method: str, weights: dict[str, float], explain: bool) -> bool:
        """Whether the store can fuse this query in one request with the same result.

        Only plain RRF (weighted RRF differs in form between engines), without per-retriever
        evidence (the engine reports only the fused score), over single-chunk documents (the
        engine fuses chunk rankings, we fuse document rankings).
        """
        schema = self.store.schema
        return (
            not explain
            and len(names) > 1
            and method == "rrf"
            and all(x == 1.0 for x in weights.values())
            and self.store.native_fusion
            and schema is not None
            and schema.multi_chunk is False
        )

    def _rerank(self, query: str, ranked: list[Candidate], rerank_top: int, timing: SearchTiming) -> list[Candidate]:
        """Rescore the head with the cross-encoder; the tail keeps its fused order."""
        assert self.reranker is not None  # checked before any work
        t = time.perf_counter()
        head = ranked[:rerank_top]
        scores = self.reranker.score(query, [_passage(c.point) for c in head])
        for c, s in zip(head, scores):
            c.rerank_score = float(s)
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        timing.rerank = time.perf_counter() - t
        return [head[i] for i in order] + ranked[rerank_top:]

    @staticmethod
    def _hit(c: Candidate, fusion: str | None) -> Hit:
        p = c.point.payload
        return Hit(
            doc_id=c.point.doc_id,
            score=c.rerank_score if c.rerank_score is not None else c.score,
            text=p.get("text", ""),
            title=p.get("title"),
            metadata=p.get("metadata") or {},
            chunk=int(p.get("chunk", 0)),
            span=(int(p["start"]), int(p["end"])) if "start" in p else None,
            explanation=Explanation(
                retrievers=[
                    RetrieverEvidence(n, r, s) for n, (r, s) in sorted(c.evidence.items(), key=lambda kv: kv[1][0])
                ],
                fusion=fusion,
                fused_score=c.score if fusion else None,
                rerank_score=c.rerank_score,
            ),
        )

    def _explain_sparse(
        self, vectors: QueryVectors, hits: list[Hit], ranked: list[Candidate], timing: SearchTiming
    ) -> None:
        """The query tokens each top hit matched, from its stored sparse vector (fetched if needed)."""
        assert self.sparse is not None
        t = time.perf_counter()
        qs = vectors.sparse if vectors.sparse is not None else self.sparse.encode_query([vectors.text])[0]
        missing = [c.point.id for c in ranked if c.point.sparse is None]
        fetched = {p.id: p.sparse for p in self.store.get(missing, with_sparse=True)} if missing else {}
        for hit, c in zip(hits, ranked):
            vec = c.point.sparse if c.point.sparse is not None else fetched.get(c.point.id)
            if vec is not None:
                hit.explanation.sparse_tokens = self.sparse.explain_overlap(qs, vec)
        timing.explain = time.perf_counter() - t

    # -- batches -------------------------------------------------------------------------------
    def _encode_batch(self, texts: list[str], names: list[str], timing: SearchTiming) -> list[QueryVectors]:
        """Query vectors for the retrievers in use only (BM25 alone encodes nothing): one
        ``encode_query`` call per encoder, the dense one on another thread while the sparse one
        runs (both release the GIL in their kernels, so on two cores it costs no wall time)."""
        t = time.perf_counter()
        batch = [QueryVectors(text) for text in texts]
        sparse = self.sparse if "sparse" in names else None
        dense = self.dense if "dense" in names else None
        pending = None
        if sparse is not None and dense is not None and self.parallel_encode:
            pending = _encode_pool().submit(dense.encode_query, texts)
        if sparse is not None:
            for vectors, sv in zip(batch, sparse.encode_query(texts)):
                vectors.sparse = sv
        if dense is not None:
            for vectors, dv in zip(batch, pending.result() if pending is not None else dense.encode_query(texts)):
                vectors.dense = dv
        timing.encode = time.perf_counter() - t
        return batch

    def _explain_vectors(self, batch: list[QueryVectors], names: list[str]) -> list[QueryVectors]:
        """What :meth:`_explain_sparse` reads per query: the retrieval vectors where the sparse
        query is among them, else every sparse query for explanations in one call (kept out of
        the vectors the retrievers saw)."""
        if "sparse" in names or self.sparse is None:
            return batch
        texts = [vectors.text for vectors in batch]
        return [QueryVectors(text, sparse=sparse) for text, sparse in zip(texts, self.sparse.encode_query(texts))]

    def _retrieve_batch(self, requests: list[list[StoreQuery]], timing: SearchTiming) -> list[list[list[ScoredPoint]]]:
        """Every query's store requests in one :meth:`VectorStore.search_batch` call; per query,
        each request's points. One query's requests are sent one by one instead, so its timing
        says what each retriever took."""
        if len(requests) == 1:
            points = []
            for request in requests[0]:
                t = time.perf_counter()
                points.append(self.store.search_batch([request])[0])
                timing.retrieve[request.retriever] = time.perf_counter() - t
            return [points]
        t = time.perf_counter()
        answers = iter(self.store.search_batch([r for per_query in requests for r in per_query]))
        out = [[next(answers) for _ in per_query] for per_query in requests]
        timing.retrieve["batch"] = time.perf_counter() - t
        return out

    @staticmethod
    def _store_queries(
        vectors: QueryVectors, plan: Plan, fields: Sequence[str] | None, native: bool
    ) -> list[StoreQuery]:
        """What the store is asked for one query: one fused request (``native``), else one per
        retriever. Candidates' own sparse vectors are not fetched: only the shown hits need them."""
        fetch, flt = plan.fetch, plan.options.filter
        if native:
            text = vectors.text if "bm25" in plan.names else None
            fused = StoreQuery(
                FUSED,
                fetch,
                sparse=vectors.sparse,
                dense=vectors.dense,
                text=text,
                candidates=fetch,
                k=plan.k,
                filter=flt,
            )
            return [fused]
        out = []
        for name in plan.names:
            if name == "sparse" and vectors.sparse is not None:
                out.append(StoreQuery(SPARSE, fetch, sparse=vectors.sparse, filter=flt, fields=fields))
            elif name == "dense" and vectors.dense is not None:
                out.append(StoreQuery(DENSE, fetch, dense=vectors.dense, filter=flt, fields=fields))
            else:
                out.append(StoreQuery(BM25, fetch, text=vectors.text, filter=flt, fields=fields))
        return out

    def _read_payloads_batch(self, shown: list[list[Candidate]], with_sparse: bool, timing: SearchTiming) -> None:
        """:meth:`_read_payloads` for every query's shown hits in one read. A document shown by
        several queries gets its own copy of the payload in each."""
        t = time.perf_counter()
        ids = list(dict.fromkeys(c.point.id for per_query in shown for c in per_query))
        full = {p.id: p for p in self.store.get(ids, with_sparse=with_sparse)} if ids else {}
        used: set[str] = set()
        for per_query in shown:
            for c in per_query:
                point = full.get(c.point.id)
                if point is None:  # deleted since the search: the hit keeps what ranking read
                    continue
                payload = copy.deepcopy(point.payload) if c.point.id in used else point.payload
                c.point.payload, c.point.sparse = payload, point.sparse
                used.add(c.point.id)
        timing.payloads = time.perf_counter() - t

    # -- validation ----------------------------------------------------------------------------
    def _plan(self, o: SearchOptions) -> Plan:
        """The options checked against this searcher: retrievers to query, fusion, k and weights."""
        parse_filter(o.filter)  # fail on a malformed filter before encoding anything
        names = self._names_for(o.mode)
        if o.rerank and self.reranker is None:
            raise ValueError("rerank=True needs a reranker (HybridSearcher(..., reranker=Reranker(model)))")
        method = o.fusion if o.fusion is not None else self.fusion
        k = self.rrf_k if o.rrf_k is None else o.rrf_k
        w = dict(o.weights) if o.weights is not None else self.weights
        names = _weighted_in(names, w)
        return Plan(o, names, method, k, {n: x for n, x in w.items() if n in names})

    def _names_for(self, mode: str) -> list[str]:
        if mode == "hybrid":
            names = self.retrievers
            if not names:
                raise ValueError("no retrievers configured")
            return names
        if mode not in RETRIEVERS:
            raise ValueError(f"unknown mode {mode!r}; choose sparse, dense, bm25 or hybrid")
        if mode not in self.retrievers:
            what = "index" if mode == "bm25" else "encoder"
            raise ValueError(f"mode {mode!r} needs a {mode} {what}; configured: {self.retrievers}")
        return [mode]


def _known_fusion(fusion: str) -> str:
    """``fusion`` if it names a fusion method (the contract's check), else a one-line ``ValueError``."""
    known = SearchOptions.of(fusion=fusion).fusion
    assert known is not None
    return known


def _weighted_in(names: list[str], weights: Mapping[str, float]) -> list[str]:
    """The retrievers a fusion uses: weight 0 leaves one out (and saves its query)."""
    if len(names) == 1:
        return names
    used = [n for n in names if weights.get(n, 1.0) > 0]
    if not used:
        raise ValueError(f"every fusion weight is 0 for retrievers {names}: give at least one a weight > 0")
    return used


def _passage(p: ScoredPoint) -> str:
    return join_title(p.payload.get("title"), p.payload.get("text", ""))


def searcher_for_store(
    store: VectorStore,
    *,
    use_sparse: bool = True,
    use_dense: bool = True,
    reranker: str | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> HybridSearcher:
    """A searcher with the encoders the collection records in its schema (loaded here)."""
    from ..encoders.dense import DenseEncoder
    from ..encoders.reranker import Reranker
    from ..encoders.sparse import SparseEncoder

    schema = store.schema
    if schema is None:
        raise StoreError(f"{store.url} holds no collection yet: run `sparsehybrid index` first")
    sparse = SparseEncoder(schema.sparse_model, device=device) if use_sparse and schema.sparse_model else None
    dense = DenseEncoder(schema.dense_model, device=device) if use_dense and schema.dense_model else None
    rr = Reranker(reranker, device=device) if reranker else None
    return HybridSearcher(store, sparse, dense, rr, **kwargs)
