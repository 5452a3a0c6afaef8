"""The query layer: sparse, dense and BM25 retrieval, fusion, optional cross-encoder reranking.

Retrieval runs per retriever against the store, chunks collapse to documents (best chunk wins),
rankings fuse client-side (so any backend works and every hit can say who found it at which rank),
and the top of the fused list may be reranked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .connectors.base import CollectionSchema, StoreError, VectorStore
from .connectors.filters import parse_filter
from .encoders.dense import DenseEncoder
from .encoders.reranker import Reranker
from .encoders.sparse import SparseEncoder
from .fusion import fuse
from .types import Explanation, Hit, RetrieverEvidence, ScoredPoint, SearchMode

#: Longest query accepted, in characters. Encoders truncate at their max length anyway; this
#: bounds the work a pathological query can cause.
MAX_QUERY_CHARS = 100_000


@dataclass
class RetrieverResult:
    """One retriever's document ranking for a query (chunks already collapsed)."""

    name: str
    points: list[ScoredPoint]
    seconds: float


@dataclass
class SearchTiming:
    encode: float = 0.0
    retrieve: dict[str, float] = field(default_factory=dict)
    rerank: float = 0.0
    total: float = 0.0


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
        fusion: ``rrf`` (default), ``weighted`` or ``dbsf``; ``rrf_k`` and ``weights`` tune it.
    """

    def __init__(
        self,
        store: VectorStore,
        sparse: SparseEncoder | None = None,
        dense: DenseEncoder | None = None,
        reranker: Reranker | None = None,
        *,
        bm25: bool | None = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: Mapping[str, float] | None = None,
    ):
        self.store, self.sparse, self.dense, self.reranker = store, sparse, dense, reranker
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
        fuse(fusion, {})  # validates the name early
        self.fusion, self.rrf_k, self.weights = fusion, rrf_k, dict(weights or {})
        self.last_timing = SearchTiming()

    @property
    def retrievers(self) -> list[str]:
        """The retrievers hybrid mode fuses, in a fixed order."""
        return [
            name
            for name, on in (
                ("sparse", self.sparse is not None),
                ("dense", self.dense is not None),
                ("bm25", self.bm25),
            )
            if on
        ]

    def search(
        self,
        query: str,
        top_k: int = 10,
        mode: SearchMode = "hybrid",
        candidates: int = 100,
        rerank: bool = False,
        rerank_top: int = 50,
        filter: Mapping[str, Any] | None = None,
        explain: bool = True,
    ) -> list[Hit]:
        """Top ``top_k`` documents for ``query``.

        ``candidates`` points are fetched per retriever before fusion; with ``rerank=True`` the
        best ``rerank_top`` fused documents are rescored by the cross-encoder.
        """
        t0 = time.perf_counter()
        query = self._check_query(query)
        if top_k < 1 or candidates < 1:
            raise ValueError("top_k and candidates must be >= 1")
        parse_filter(filter)  # fail on a malformed filter before encoding anything
        names = self._names_for(mode)
        if rerank and self.reranker is None:
            raise ValueError("rerank=True needs a reranker (HybridSearcher(..., reranker=Reranker(model)))")
        timing = SearchTiming()
        fetch = max(candidates, top_k, rerank_top if rerank else 0)
        results, query_sparse = self._retrieve(query, names, fetch, filter, timing)

        if len(names) == 1:
            only = results[names[0]]
            ranked = [(p, p.score, {names[0]: (i + 1, p.score)}) for i, p in enumerate(only.points)]
            fusion_name = None
        else:
            by_doc = {p.doc_id: p for r in results.values() for p in reversed(r.points)}
            fused = fuse(
                self.fusion,
                {n: [(p.doc_id, p.score) for p in results[n].points] for n in names},
                k=self.rrf_k,
                weights={n: w for n, w in self.weights.items() if n in names} or None,
            )
            # The displayed chunk: the one the first retriever (in fixed order) that found the doc ranked best.
            ranked = [
                (
                    self._best_chunk(it.id, names, results, by_doc),
                    it.score,
                    {n: (it.ranks[n], it.scores[n]) for n in it.ranks},
                )
                for it in fused
            ]
            fusion_name = self.fusion

        rerank_scores: dict[str, float] = {}
        if rerank:
            t = time.perf_counter()
            head = ranked[:rerank_top]
            scores = self.reranker.score(query, [_passage(p) for p, _, _ in head])
            rerank_scores = {p.doc_id: s for (p, _, _), s in zip(head, scores)}
            order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
            ranked = [head[i] for i in order] + ranked[rerank_top:]
            timing.rerank = time.perf_counter() - t

        hits = []
        for point, score, evidence in ranked[:top_k]:
            p = point.payload
            rs = rerank_scores.get(point.doc_id)
            hits.append(
                Hit(
                    doc_id=point.doc_id,
                    score=rs if rs is not None else score,
                    text=p.get("text", ""),
                    title=p.get("title"),
                    metadata=p.get("metadata") or {},
                    chunk=int(p.get("chunk", 0)),
                    span=(int(p["start"]), int(p["end"])) if "start" in p else None,
                    explanation=Explanation(
                        retrievers=[
                            RetrieverEvidence(n, r, s)
                            for n, (r, s) in sorted(evidence.items(), key=lambda kv: kv[1][0])
                        ],
                        fusion=fusion_name,
                        fused_score=score if fusion_name else None,
                        rerank_score=rs,
                    ),
                )
            )
        if explain and self.sparse is not None and hits:
            self._explain_sparse(query_sparse, query, hits, ranked[:top_k])
        timing.total = time.perf_counter() - t0
        self.last_timing = timing
        return hits

    # -- internals -----------------------------------------------------------------------------
    @staticmethod
    def _check_query(query: str) -> str:
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise ValueError("query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
        return query

    def _names_for(self, mode: str) -> list[str]:
        if mode == "hybrid":
            names = self.retrievers
            if not names:
                raise ValueError("no retrievers configured")
            return names
        if mode not in ("sparse", "dense", "bm25"):
            raise ValueError(f"unknown mode {mode!r}; choose sparse, dense, bm25 or hybrid")
        if mode not in self.retrievers:
            raise ValueError(
                f"mode {mode!r} needs a {mode} {'index' if mode == 'bm25' else 'encoder'}; configured: {self.retrievers}"
            )
        return [mode]

    def _retrieve(self, query: str, names: list[str], fetch: int, filter, timing: SearchTiming):
        t = time.perf_counter()
        qs = self.sparse.encode_query([query])[0] if "sparse" in names else None
        qd = self.dense.encode_query([query])[0] if "dense" in names else None
        timing.encode = time.perf_counter() - t
        results = {}
        for name in names:
            t = time.perf_counter()
            if name == "sparse":
                pts = self.store.search_sparse(qs, fetch, filter, with_sparse=True)
            elif name == "dense":
                pts = self.store.search_dense(qd, fetch, filter)
            else:
                pts = self.store.search_bm25(query, fetch, filter)
            timing.retrieve[name] = time.perf_counter() - t
            results[name] = RetrieverResult(name, collapse_to_documents(pts), timing.retrieve[name])
        return results, qs

    @staticmethod
    def _best_chunk(
        doc_id: str, names: list[str], results: dict[str, RetrieverResult], by_doc: dict[str, ScoredPoint]
    ) -> ScoredPoint:
        for n in names:
            for p in results[n].points:
                if p.doc_id == doc_id:
                    return p
        return by_doc[doc_id]

    def _explain_sparse(self, qs, query: str, hits: list[Hit], ranked) -> None:
        if qs is None:
            qs = self.sparse.encode_query([query])[0]
        missing = [p.id for p, _, _ in ranked if p.sparse is None]
        fetched = {p.id: p.sparse for p in self.store.get(missing, with_sparse=True)} if missing else {}
        for hit, (point, _, _) in zip(hits, ranked):
            vec = point.sparse if point.sparse is not None else fetched.get(point.id)
            if vec is not None:
                hit.explanation.sparse_tokens = self.sparse.explain_overlap(qs, vec)


def _passage(p: ScoredPoint) -> str:
    title = p.payload.get("title")
    text = p.payload.get("text", "")
    return f"{title} {text}" if title else text


def open_searcher(
    store: VectorStore,
    *,
    use_sparse: bool = True,
    use_dense: bool = True,
    reranker: str | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> HybridSearcher:
    """A searcher with the encoders the collection records in its schema (what the CLI uses)."""
    schema = store.schema
    if schema is None:
        raise StoreError(f"{store.url} holds no collection yet: run `sparsehybrid index` first")
    sparse = SparseEncoder(schema.sparse_model, device=device) if use_sparse and schema.sparse_model else None
    dense = DenseEncoder(schema.dense_model, device=device) if use_dense and schema.dense_model else None
    rr = Reranker(reranker, device=device) if reranker else None
    return HybridSearcher(store, sparse, dense, rr, **kwargs)
