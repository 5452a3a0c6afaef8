"""Chunk and encode documents, checking every vector: the store-free half of indexing.

The in-process :class:`~sparsehybrid.ingestion.indexing.Indexer` and the Prefect flow's
``encode-batch`` task (on a thread or a Dask worker) both encode through a :class:`BatchEncoder`,
so what counts as a bad vector, and how a document is rejected whole, is decided in one place.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..connectors.base import CollectionSchema
from ..heap import encoding_turn
from ..types import Chunk, Document, InvalidRecordError, PointRecord, SparseVector
from .chunking import Chunker
from .sources import Rejected


@dataclass
class EncodedBatch:
    """One encoded batch: the records, chunks per document (by id), the documents whose vectors
    were bad (rejected whole), encode time and which process did it (for the run summary)."""

    records: list[PointRecord]
    n_chunks: dict[str, int]
    rejected: list[Rejected]
    seconds: float
    worker: str
    #: Seconds per step of this batch ("chunk", "sparse", "dense"): a run reports docs/s per stage.
    stages: dict[str, float] = field(default_factory=dict)


class BatchEncoder:
    """Chunk + encode + check with the given encoders; holds no store.

    Args:
        chunk_overlap: tokens shared by consecutive chunks of a long document.
        chunking: ``False`` stores one point per document and lets the encoders truncate at
            their max length (what sentence-transformers' IR evaluators do; used for parity).
    """

    def __init__(self, sparse: Any = None, dense: Any = None, *, chunk_overlap: int = 32, chunking: bool = True):
        self.sparse, self.dense = sparse, dense
        tokenizer_owner = sparse or dense
        if tokenizer_owner is not None and chunking:
            max_tokens = min(e.max_length for e in (sparse, dense) if e is not None)
            self.chunker: Chunker | None = Chunker(
                tokenizer_owner.tokenizer, max_tokens=max_tokens, overlap=chunk_overlap
            )
        else:
            self.chunker = None

    def schema(self, bm25: bool, bm25_avg_len: float = 256.0) -> CollectionSchema:
        """The collection schema these encoders imply."""
        return CollectionSchema(
            sparse_model=self.sparse.name if self.sparse else None,
            sparse_dim=self.sparse.vocab_size if self.sparse else None,
            dense_model=self.dense.name if self.dense else None,
            dense_dim=self.dense.dim if self.dense else None,
            bm25=bm25,
            bm25_avg_len=bm25_avg_len,
        )

    def chunk(self, docs: Sequence[Document]) -> list[list[Chunk]]:
        if self.chunker is None:
            return [[Chunk(d.id, 0, d.text, 0, len(d.text), d.title, d.metadata, d.content_hash(), 1)] for d in docs]
        return self.chunker.chunk(docs)

    def encode_documents(self, docs: Sequence[Document]) -> EncodedBatch:
        """Chunk and encode a batch of documents (a document with a bad vector is rejected whole)."""
        with encoding_turn():  # never while the store builds (see heap.encoding_turn)
            t = time.perf_counter()
            chunk_lists = self.chunk(docs)
            stages = {"chunk": time.perf_counter() - t}
            records, bad = self.encode_checked([c for cl in chunk_lists for c in cl], stages)
            seconds = time.perf_counter() - t
        n_chunks = {d.id: len(cl) for d, cl in zip(docs, chunk_lists)}
        worker = f"{os.uname().nodename}:{os.getpid()}"
        return EncodedBatch(records, n_chunks, list(bad.values()), seconds, worker, stages)

    def encode(self, chunks: Sequence[Chunk]) -> list[PointRecord]:
        """Vectors for a batch of chunks (sparse and dense encoded as whole batches), unchecked."""
        texts = [c.full_text for c in chunks]
        sparse = self.sparse.encode_document(texts) if self.sparse else [None] * len(chunks)
        dense = self.dense.encode_document(texts) if self.dense is not None else [None] * len(chunks)
        return [PointRecord(c, s, d) for c, s, d in zip(chunks, sparse, dense)]

    def encode_checked(
        self, chunks: Sequence[Chunk], stages: dict[str, float] | None = None
    ) -> tuple[list[PointRecord], dict[str, Rejected]]:
        """Like :meth:`encode`, but a document whose vectors are bad is rejected, not fatal.

        Bad means: the encoder raised ``ValueError`` for it (e.g. :class:`SparseVector` refusing
        NaN), or returned NaN/inf, negative sparse weights, token ids outside the vocabulary, or a
        dense vector of the wrong size or all zeros. Returns (records of the good documents,
        {doc id: Rejected}); a document is kept or rejected whole, never with some chunks missing.
        """
        bad: dict[str, Rejected] = {}
        n = len(chunks)
        stages = stages if stages is not None else {}
        sparse: list = [None] * n
        dense: list = [None] * n
        if self.sparse:
            t = time.perf_counter()
            sparse = self._encode_side("sparse", self.sparse, chunks, bad)
            stages["sparse"] = time.perf_counter() - t
        if self.dense is not None:
            t = time.perf_counter()
            dense = self._encode_side("dense", self.dense, chunks, bad)
            stages["dense"] = time.perf_counter() - t
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

    def _check_dense(self, v: Any) -> Any:
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
