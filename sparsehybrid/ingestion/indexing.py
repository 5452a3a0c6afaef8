"""Encode documents and write them to a store: validate → chunk → encode → upsert.

This is the in-process engine that the CLI and the Prefect flows drive. It is incremental by
construction: point ids are deterministic and every chunk carries its document's content hash,
so re-running over the same corpus skips what is already stored, and a run that died mid-way
resumes by simply running again.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..connectors.base import CollectionSchema, VectorStore
from ..encoders.dense import DenseEncoder
from ..encoders.sparse import SparseEncoder
from ..types import Chunk, Document, InvalidRecordError, PointRecord, SparseVector
from .chunking import Chunker
from .dead_letter import run_timestamp, write_dead_letter
from .sources import Rejected, SourceItem

logger = logging.getLogger(__name__)


@dataclass
class IndexStats:
    """What one indexing run did; the numbers a run summary (CLI table, Prefect artifact) shows."""

    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    duplicates: int = 0
    chunks: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: Chunks stored with an empty sparse vector (e.g. punctuation only): only dense/BM25 can find them.
    empty_sparse: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    upsert_seconds: float = 0.0

    @property
    def encoded(self) -> int:
        return self.added + self.updated

    @property
    def docs_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "seen": self.seen,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "empty_sparse": self.empty_sparse,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "upsert_seconds": round(self.upsert_seconds, 3),
            "docs_per_second": round(self.docs_per_second, 2),
        }


def schema_for(
    sparse: SparseEncoder | None, dense: DenseEncoder | None, bm25: bool = True, bm25_avg_len: float = 256.0
) -> CollectionSchema:
    """The collection schema implied by a set of encoders."""
    return CollectionSchema(
        sparse_model=sparse.name if sparse else None,
        sparse_dim=sparse.vocab_size if sparse else None,
        dense_model=dense.name if dense else None,
        dense_dim=dense.dim if dense else None,
        bm25=bm25,
        bm25_avg_len=bm25_avg_len,
    )


def estimate_avg_len(store: VectorStore, docs: Sequence[Document]) -> float:
    """Average BM25 document length over a sample: length normalisation needs the corpus average."""
    if not docs:
        return 256.0
    return max(1.0, sum(store.bm25_doc_length(d.full_text) for d in docs) / len(docs))


class Indexer:
    """Index documents into ``store`` with the given encoders.

    Args:
        batch_size: documents per encode/upsert batch.
        chunk_overlap: tokens shared by consecutive chunks of a long document.
        skip_unchanged: compare content hashes with the store and encode only what changed.
        chunking: ``False`` stores one point per document and lets the encoders truncate at
            their max length (what sentence-transformers' IR evaluators do; used for parity).
    """

    def __init__(
        self,
        store: VectorStore,
        sparse: SparseEncoder | None = None,
        dense: DenseEncoder | None = None,
        *,
        bm25: bool = True,
        batch_size: int = 64,
        chunk_overlap: int = 32,
        skip_unchanged: bool = True,
        chunking: bool = True,
    ):
        if sparse is None and dense is None and not bm25:
            raise ValueError("nothing to index with: give a sparse encoder, a dense encoder, or bm25=True")
        self.store, self.sparse, self.dense, self.bm25 = store, sparse, dense, bm25
        self.batch_size = batch_size
        self.skip_unchanged = skip_unchanged
        tokenizer_owner = sparse or dense
        if tokenizer_owner is not None and chunking:
            max_tokens = min(e.max_length for e in (sparse, dense) if e is not None)
            self.chunker: Chunker | None = Chunker(
                tokenizer_owner.tokenizer, max_tokens=max_tokens, overlap=chunk_overlap
            )
        else:
            self.chunker = None

    # -- stages (small, so flows can wrap each as a task) ------------------------------------
    def encode(self, chunks: Sequence[Chunk]) -> list[PointRecord]:
        """Vectors for a batch of chunks (sparse and dense encoded as whole batches)."""
        texts = [c.full_text for c in chunks]
        sparse = self.sparse.encode_document(texts) if self.sparse else [None] * len(chunks)
        dense = self.dense.encode_document(texts) if self.dense is not None else [None] * len(chunks)
        return [PointRecord(c, s, d) for c, s, d in zip(chunks, sparse, dense)]

    def encode_checked(self, chunks: Sequence[Chunk]) -> tuple[list[PointRecord], dict[str, Rejected]]:
        """Like :meth:`encode`, but a document whose vectors are bad is rejected, not fatal.

        Bad means: the encoder raised ``ValueError`` for it (e.g. :class:`SparseVector` refusing
        NaN), or returned NaN/inf, negative sparse weights, token ids outside the vocabulary, or a
        dense vector of the wrong size or all zeros. Returns (records of the good documents,
        {doc id: Rejected}); a document is kept or rejected whole, never with some chunks missing.
        """
        bad: dict[str, Rejected] = {}
        n = len(chunks)
        sparse = self._encode_side("sparse", self.sparse, chunks, bad) if self.sparse else [None] * n
        dense = self._encode_side("dense", self.dense, chunks, bad) if self.dense is not None else [None] * n
        records = []
        for c, s, d in zip(chunks, sparse, dense):
            if c.doc_id in bad:
                continue
            try:
                s = self._check_sparse(s) if self.sparse else None
                d = self._check_dense(d) if self.dense is not None else None
            except InvalidRecordError as err:
                where = f"chunk {c.chunk}: " if c.n_chunks > 1 else ""
                bad[c.doc_id] = Rejected(c.doc_id, err.field_name, where + err.reason)
                continue
            records.append(PointRecord(c, s, d))
        return [r for r in records if r.chunk.doc_id not in bad], bad

    def _encode_side(self, kind: str, encoder: Any, chunks: Sequence[Chunk], bad: dict[str, Rejected]) -> list:
        """One encoder over a batch; on ``ValueError`` retry document by document to find the culprit.

        Other exceptions (out of memory, a broken model) are not a record's fault and propagate.
        """
        texts = [c.full_text for c in chunks]
        try:
            return self._expect(kind, list(encoder.encode_document(texts)), len(texts))
        except ValueError:
            pass  # a record's fault, probably: find which document(s)
        out: list = [None] * len(chunks)
        by_doc: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            by_doc.setdefault(c.doc_id, []).append(i)
        for doc_id, positions in by_doc.items():
            if doc_id in bad:
                continue
            try:
                vecs = self._expect(kind, list(encoder.encode_document([texts[i] for i in positions])), len(positions))
            except ValueError as exc:
                bad[doc_id] = Rejected(doc_id, kind, f"{kind} encoder failed: {exc}")
                continue
            for i, v in zip(positions, vecs):
                out[i] = v
        return out

    @staticmethod
    def _expect(kind: str, vectors: list, n: int) -> list:
        if len(vectors) != n:
            raise RuntimeError(f"the {kind} encoder returned {len(vectors)} vectors for {n} texts")
        return vectors

    def _check_sparse(self, v: Any) -> SparseVector:
        if v is None:
            raise InvalidRecordError(None, "sparse", "the encoder returned no vector")
        try:
            vec = v if isinstance(v, SparseVector) else SparseVector(v.indices, v.values)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidRecordError(None, "sparse", str(exc)) from None
        if any(not math.isfinite(x) for x in vec.values):  # a subclass or a hand-built object may skip checks
            raise InvalidRecordError(None, "sparse", "sparse vector has NaN or infinite values")
        negative = [x for x in vec.values if x < 0]
        if negative:
            raise InvalidRecordError(
                None,
                "sparse",
                f"{len(negative)} negative weight(s) (min {min(negative):g}); learned sparse weights must be >= 0",
            )
        vocab = getattr(self.sparse, "vocab_size", None)
        if vocab and vec.indices and max(vec.indices) >= vocab:
            raise InvalidRecordError(
                None, "sparse", f"token id {max(vec.indices)} is outside the vocabulary (size {vocab})"
            )
        return vec

    def _check_dense(self, v: Any):
        arr = np.asarray(v, dtype=np.float64) if v is not None else None
        dim = getattr(self.dense, "dim", None)
        if arr is None or arr.ndim != 1 or (dim and arr.shape[0] != dim):
            shape = None if arr is None else arr.shape
            raise InvalidRecordError(None, "dense", f"expected a vector of {dim} floats, got shape {shape}")
        if not np.isfinite(arr).all():
            raise InvalidRecordError(None, "dense", "dense vector has NaN or infinite values")
        if not arr.any():
            raise InvalidRecordError(None, "dense", "dense vector is all zeros (cosine similarity is undefined)")
        return v

    def select(
        self,
        batch: Iterable[SourceItem | Document],
        stored: dict[str, tuple[str, int]],
        stats: IndexStats,
        seen_ids: set[str],
    ) -> list[tuple[Document, tuple[str, int] | None]]:
        """Validate a batch and keep what needs encoding, as (document, stored state or None).

        Rejected and unchanged documents are counted in ``stats``; valid ids go to ``seen_ids``.
        """
        docs = []
        for item in batch:
            if isinstance(item, Rejected):
                stats.rejected.append(item)
                continue
            try:
                item.validate()
            except InvalidRecordError as err:
                stats.rejected.append(Rejected.from_error(err, "(document)"))
                continue
            stats.seen += 1
            seen_ids.add(item.id)
            old = stored.get(item.id)
            if old is not None and self.skip_unchanged and old[0] == item.content_hash():
                stats.unchanged += 1
                continue
            docs.append((item, old))
        return docs

    def chunk(self, docs: Sequence[Document]) -> list[list[Chunk]]:
        if self.chunker is None:
            return [[Chunk(d.id, 0, d.text, 0, len(d.text), d.title, d.metadata, d.content_hash(), 1)] for d in docs]
        return self.chunker.chunk(docs)

    def ensure_collection(self, first_docs: Sequence[Document]) -> CollectionSchema:
        wanted = schema_for(
            self.sparse, self.dense, self.bm25, estimate_avg_len(self.store, first_docs) if self.bm25 else 256.0
        )
        return self.store.ensure_schema(wanted)

    # -- the run -------------------------------------------------------------------------------
    def index(
        self,
        items: Iterable[SourceItem | Document],
        *,
        sync: bool = False,
        on_batch: Callable[[IndexStats], None] | None = None,
        dead_letter: str | os.PathLike[str] | None = None,
    ) -> IndexStats:
        """Index a document stream. ``sync=True`` also deletes stored documents absent from it.

        Duplicate ids in one stream: the last one wins (counted in ``duplicates``). Rejected
        records are in ``stats.rejected`` and, with ``dead_letter``, appended to that JSONL file
        (see :mod:`.dead_letter`), also when the run fails part-way.
        """
        stats = IndexStats()
        started = run_timestamp()
        try:
            return self._index(items, stats, sync, on_batch)
        finally:
            if dead_letter is not None:
                write_dead_letter(dead_letter, stats.rejected, at=started)

    def _index(self, items, stats: IndexStats, sync: bool, on_batch) -> IndexStats:
        t0 = time.perf_counter()
        items = _name_positions(iter(items))
        head = list(itertools.islice(items, 2000))
        head_docs = [d for d in head if isinstance(d, Document)]
        self.ensure_collection(head_docs)
        # Always read: it tells added from updated and which surplus chunks to delete.
        stored = self.store.document_states()
        seen_ids: set[str] = set()
        pending: Future | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upsert") as pool:
            for batch in _batches(_dedupe(itertools.chain(head, items), stats), self.batch_size):
                docs = self.select(batch, stored, stats, seen_ids)
                if not docs:
                    continue
                t_enc = time.perf_counter()
                chunk_lists = self.chunk([d for d, _ in docs])
                records, bad = self.encode_checked([c for cl in chunk_lists for c in cl])
                stats.encode_seconds += time.perf_counter() - t_enc
                docs, empty = account_encoded(stats, docs, records, list(bad.values()))
                if empty:
                    logger.warning(
                        "%d chunk(s) got an empty sparse vector (stored; only dense/BM25 can find them), e.g. %r chunk %d",
                        len(empty),
                        empty[0].doc_id,
                        empty[0].chunk,
                    )
                if not records:
                    continue
                n_chunks = {r.chunk.doc_id: r.chunk.n_chunks for r in records}
                stale = stale_point_ids(docs, [n_chunks[d.id] for d, _ in docs])
                if pending is not None:
                    stats.upsert_seconds += pending.result()
                pending = pool.submit(self._write, records, stale)
                if on_batch:
                    on_batch(stats)
            if pending is not None:
                stats.upsert_seconds += pending.result()
        if sync:
            # In batches: bounded requests for server stores (Elasticsearch caps terms at 65,536),
            # and a run killed part-way has deleted whole documents only; the next run does the rest.
            vanished = sorted(set(stored) - seen_ids)
            for i in range(0, len(vanished), self.batch_size):
                self.store.delete_documents(vanished[i : i + self.batch_size])
                stats.deleted += len(vanished[i : i + self.batch_size])
        self.store.flush()
        stats.seconds = time.perf_counter() - t0
        return stats

    def _write(self, records: list[PointRecord], stale: list[str]) -> float:
        t = time.perf_counter()
        write_batch(self.store, records, stale)
        return time.perf_counter() - t


def account_encoded(
    stats: IndexStats,
    docs: list[tuple[Document, tuple[str, int] | None]],
    records: Sequence[PointRecord],
    rejected: Sequence[Rejected],
) -> tuple[list[tuple[Document, tuple[str, int] | None]], list[Chunk]]:
    """Count one encoded batch into ``stats`` (shared by the Indexer and the Prefect flow).

    Documents rejected at encoding are dropped whole: a stored older version stays (and is
    not synced away). Returns the kept (document, stored state) pairs and the chunks whose
    sparse vector came out empty.
    """
    if rejected:
        stats.rejected.extend(rejected)
        stats.seen -= len(rejected)
        bad = {r.record for r in rejected}
        docs = [(d, old) for d, old in docs if d.id not in bad]
    empty = [r.chunk for r in records if r.sparse is not None and not len(r.sparse)]
    stats.empty_sparse += len(empty)
    stats.added += sum(1 for _, old in docs if old is None)
    stats.updated += sum(1 for _, old in docs if old is not None)
    stats.chunks += len(records)
    return docs, empty


def stale_point_ids(docs: Sequence[tuple[Document, tuple[str, int] | None]], n_chunks: Sequence[int]) -> list[str]:
    """Point ids of the surplus chunks of documents that got shorter (now ``n`` chunks, stored more)."""
    return [
        Chunk(d.id, i, "", 0, 0).point_id
        for (d, old), n in zip(docs, n_chunks)
        if old is not None
        for i in range(n, old[1])
    ]


def write_batch(store: VectorStore, records: Sequence[PointRecord], stale: Sequence[str]) -> None:
    """Delete surplus chunks, then upsert.

    In this order a run killed in between leaves chunk 0 with the *old* content hash, so the
    next run re-encodes the document; the other order could leave orphans behind a new hash.
    """
    if stale:
        store.delete_points(list(stale))
    store.upsert(records)


def _dedupe(items: Iterator[SourceItem | Document], stats: IndexStats) -> Iterator[SourceItem | Document]:
    """Last-wins de-duplication within one stream, keeping stream order otherwise.

    Needs one pass to know which occurrence is last; only ids and positions are held.
    """
    buffered = list(items)
    last: dict[str, int] = {}
    for pos, item in enumerate(buffered):
        if isinstance(item, Document) and isinstance(item.id, str):
            last[item.id] = pos
    for pos, item in enumerate(buffered):
        if isinstance(item, Document) and isinstance(item.id, str) and last[item.id] != pos:
            stats.duplicates += 1
            continue
        yield item


def _name_positions(items: Iterator[SourceItem | Document]) -> Iterator[SourceItem | Document]:
    """Documents without a usable id become Rejected named by their position in the stream."""
    for pos, item in enumerate(items, start=1):
        if isinstance(item, Document) and (not isinstance(item.id, str) or not item.id.strip()):
            try:
                item.validate()
            except InvalidRecordError as err:
                item = Rejected(f"document #{pos}", err.field_name, err.reason)
        yield item


def _batches(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch
