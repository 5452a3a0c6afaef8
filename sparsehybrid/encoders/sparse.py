"""Learned-sparse (SPLADE-style) encoding through ``sentence_transformers.SparseEncoder``.

Any SparseEncoder model works: SPLADE, inference-free SPLADE (a Router with a different query
path), Korean models with their own vocabularies. Outputs leave this module as
:class:`~sparsehybrid.types.SparseVector` lists, never as dense vocabulary-sized arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..types import SparseVector
from .models import DEFAULT_SPARSE_MODEL, default_batch_size, pick_device, resolve_model

logger = logging.getLogger(__name__)


def sparse_rows(matrix) -> list[SparseVector]:
    """Split a (batch × vocab) torch sparse COO tensor (or dense tensor) into SparseVectors."""
    import torch

    if matrix.is_sparse:
        matrix = matrix.coalesce()
        rows, cols = matrix.indices()
        vals = matrix.values().float()
    else:
        rows, cols = torch.nonzero(matrix, as_tuple=True)
        vals = matrix[rows, cols].float()
    keep = vals > 0
    rows, cols, vals = rows[keep].cpu(), cols[keep].cpu(), vals[keep].cpu()
    n = matrix.shape[0]
    counts = torch.bincount(rows, minlength=n).tolist()
    cols_l, vals_l = cols.tolist(), vals.tolist()
    out, start = [], 0
    for c in counts:
        out.append(SparseVector(cols_l[start : start + c], vals_l[start : start + c]))
        start += c
    return out


class SparseEncoder:
    """Encode queries and documents into sparse vectors.

    Args:
        model: a hub id, a local path, or ``"splade-tiny"`` (the offline default).
        device: ``"cuda"``, ``"cpu"``...; auto-detected when None (CUDA with half precision).
        batch_size: texts per forward pass.
        max_length: tokens per text; longer texts are chunked by the indexer, never silently cut.
        prune_top_k: keep only the k largest weights per document vector (smaller index).
        fast: use the fused MLM-head path (:mod:`.splade_fast`) where the architecture allows.
        queries: ready the query path's ONNX Runtime graph now; an encoder that only indexes
            documents passes False (~135 MB less per model); queries still encode, on torch.
    """

    def __init__(
        self,
        model: str = DEFAULT_SPARSE_MODEL,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        prune_top_k: int | None = None,
        fast: bool = True,
        queries: bool = True,
        precision: str = "auto",
    ):
        from sentence_transformers import SparseEncoder as STSparseEncoder

        load_from, self.name = resolve_model(model)
        self.device = pick_device(device)
        self.model = STSparseEncoder(load_from, device=self.device)
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.max_length: int = int(self.model.max_seq_length or 512)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.prune_top_k = prune_top_k
        self.precision = precision
        if self.device.startswith("cuda") and precision == "auto":
            self.model.half()
        self._vocab_size: int | None = None
        self._fast = None
        if fast:
            from .splade_fast import FastSpladeEncoder

            self._fast = FastSpladeEncoder.from_sentence_transformer(
                self.model, batch_size=self.batch_size, queries=queries
            )
            if self._fast is None:
                logger.info("fast SPLADE path does not cover %s; using sentence-transformers' encoder", self.name)
        self._lookup = None
        if fast:
            from .static_lookup import StaticQueryLookup

            self._lookup = StaticQueryLookup.from_sentence_transformer(self.model)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def vocab_size(self) -> int:
        """Output dimensionality (the vocabulary), read from a real forward pass.

        ``get_embedding_dimension()`` reports the hidden size for some MLM checkpoints.
        """
        if self._vocab_size is None:
            probe = self.model.encode_document(["a"], convert_to_sparse_tensor=True)
            self._vocab_size = int(probe.shape[-1])
        return self._vocab_size

    def _finish(self, vectors: list[SparseVector]) -> list[SparseVector]:
        if self.prune_top_k:
            vectors = [v.top_k(self.prune_top_k) for v in vectors]
        return vectors

    def encode_query(self, texts: Sequence[str]) -> list[SparseVector]:
        """Queries go through the model's query path (differs for inference-free models): the fast
        path where it covers that route (checked equal at load), else sentence-transformers'."""
        if not texts:
            return []
        if self._lookup is not None:  # inference-free: a table read, checked equal at load
            return self._lookup.encode(list(texts))
        if self._fast is not None and self._fast.covers_queries:
            return self._fast.encode(list(texts), max_length=self.max_length, task="query")
        out = self.model.encode_query(list(texts), batch_size=self.batch_size, convert_to_sparse_tensor=True)
        return sparse_rows(out)

    def encode_document(self, texts: Sequence[str], *, show_progress_bar: bool = False) -> list[SparseVector]:
        if not texts:
            return []
        if self._fast is not None:
            return self._finish(self._fast.encode(list(texts), max_length=self.max_length))
        out = self.model.encode_document(
            list(texts), batch_size=self.batch_size, convert_to_sparse_tensor=True, show_progress_bar=show_progress_bar
        )
        return self._finish(sparse_rows(out))

    def decode(self, vector: SparseVector, top_k: int | None = None) -> list[tuple[str, float]]:
        """Token strings for the heaviest dimensions (what the model 'means' by a vector)."""
        order = sorted(range(len(vector)), key=lambda j: -vector.values[j])
        if top_k is not None:
            order = order[:top_k]
        tokens = self.tokenizer.convert_ids_to_tokens([vector.indices[j] for j in order])
        return [(t, vector.values[j]) for t, j in zip(tokens, order)]

    def explain_overlap(self, query: SparseVector, document: SparseVector, top_k: int = 8) -> list[tuple[str, float]]:
        """The tokens that contribute most to query·document, decoded."""
        doc = document.as_dict()
        contrib = [(i, w * doc[i]) for i, w in zip(query.indices, query.values) if i in doc]
        contrib.sort(key=lambda t: -t[1])
        contrib = contrib[:top_k]
        tokens = self.tokenizer.convert_ids_to_tokens([i for i, _ in contrib])
        return [(t, c) for t, (_, c) in zip(tokens, contrib)]

    def __repr__(self) -> str:
        return f"SparseEncoder({self.name!r}, device={self.device!r}, max_length={self.max_length})"
