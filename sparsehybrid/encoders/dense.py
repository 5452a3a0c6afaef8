"""Dense embeddings of a ``sentence_transformers.SentenceTransformer`` model, through the fast path
(:mod:`.dense_fast`, checked equal at load) where it covers the model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .models import DEFAULT_DENSE_MODEL, default_batch_size, pick_device, resolve_model


class DenseEncoder:
    """Encode queries and documents into L2-normalised float vectors (cosine = dot product).

    Args:
        model: a hub id, a local path, or ``"all-MiniLM-L6-v2"`` (the offline default).
        device: auto-detected when None (CUDA in half precision when present).
        fast: use :mod:`.dense_fast` where it covers the model (mean pooling models).
        queries: ready the query path's ONNX Runtime graph now; an encoder that only indexes
            documents passes False (~135 MB less per model); queries still encode, on torch.
    """

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        fast: bool = True,
        queries: bool = True,
    ):
        from sentence_transformers import SentenceTransformer

        load_from, self.name = resolve_model(model)
        self.device = pick_device(device)
        self.model = SentenceTransformer(load_from, device=self.device)
        if self.device.startswith("cuda"):
            self.model.half()
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.max_length: int = int(self.model.max_seq_length or 512)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.dim: int = int(self.model.get_embedding_dimension() or 0)
        self._fast = None
        if fast:
            from .dense_fast import FastDenseEncoder

            self._fast = FastDenseEncoder.from_sentence_transformer(
                self.model, batch_size=self.batch_size, queries=queries
            )

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._fast is not None:
            return self._fast.encode(list(texts), self.max_length, task="query")
        return self.model.encode_query(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)

    def encode_document(self, texts: Sequence[str], *, show_progress_bar: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._fast is not None:
            return self._fast.encode(list(texts), self.max_length, task="document")
        return self.model.encode_document(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress_bar,
        ).astype(np.float32)

    def __repr__(self) -> str:
        return f"DenseEncoder({self.name!r}, dim={self.dim}, device={self.device!r})"
