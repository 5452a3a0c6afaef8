"""Fast dense encoding for ``Transformer + mean Pooling (+ Normalize)`` models (issue 14).

sentence-transformers' ``encode`` is generic: per call it re-walks the model to set eval mode,
builds features through its preprocessing layer, pads every batch to its longest text, and runs
each module through its dispatch; on a 2-core CPU that overhead is most of a single query's time,
and padding is a large share of a document batch's. This path keeps the arithmetic and drops the
rest:

* texts are tokenized once, without padding, sorted longest first and cut into batches, so a
  batch pads only up to its own longest text (as the SPLADE fast path does);
* on CPU, whole batches run on worker threads with single-threaded torch ops (no OpenMP barrier
  per matrix product, see :func:`~.splade_fast._run_single_threaded_workers`); a single text (a
  query) runs in the caller's thread with torch's own threads, as set;
* the encoder body runs through the model's own Transformer module, then masked mean pooling and
  L2 normalisation, exactly the operations of ``Pooling(mean)`` and ``Normalize``.

A self-check at construction compares both tasks with sentence-transformers' ``encode_document``
and ``encode_query`` (cosine within 1e-4); anything else, or any disagreement, falls back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .splade_fast import (
    _SELF_CHECK_TEXTS,
    _cpu_workers,
    batch_features,
    run_batches,
    tokens_longest_first,
)

if TYPE_CHECKING:
    from .onnx_export import OnnxGraph

logger = logging.getLogger(__name__)

#: Smallest cosine between our vectors and sentence-transformers' that the self-check accepts
#: (fp32; half precision on GPU gets 1e-3).
MIN_COSINE = 1 - 1e-4


class FastDenseEncoder:
    """Dense vectors as ``model.encode_document`` / ``encode_query`` with ``normalize_embeddings``.

    Build it with :meth:`from_sentence_transformer`, which returns None for models it does not cover.
    """

    def __init__(self, model, transformer, *, batch_size: int = 32):
        self.model = model
        self.transformer = transformer
        self.batch_size = max(1, int(batch_size))
        #: ONNX Runtime graph of the model (see :mod:`.onnx_export`), and the tasks it runs.
        self.onnx: OnnxGraph | None = None
        self.onnx_tasks: frozenset[str] = frozenset()
        self._references: dict[str, np.ndarray] = {}

    @classmethod
    def from_sentence_transformer(cls, model, batch_size: int = 32, queries: bool = True) -> FastDenseEncoder | None:
        """A fast encoder for ``model``, or None (logged at INFO) when it is not covered."""
        try:
            reason = _unsupported_reason(list(model.children()))
        except Exception as exc:
            reason = f"could not inspect the model ({type(exc).__name__}: {exc})"
        if reason is None:
            fast = cls(model, model[0], batch_size=batch_size)
            reason = fast._self_check()
            if reason is None:
                if queries:  # an encoder built only for documents skips the graph (~135 MB a model)
                    fast._attach_onnx(("query",))
                return fast
        logger.info("fast dense path not used: %s", reason)
        return None

    def _self_check(self, tasks: Sequence[str] = ("document", "query")) -> str | None:
        """``tasks``, both ways, on a padded batch; any disagreement means not covered."""
        import torch

        texts = list(_SELF_CHECK_TEXTS)
        max_length = int(self.transformer.max_seq_length or 512)
        half = next(self.transformer.parameters()).dtype not in (torch.float32, torch.float64)
        floor = 1 - 1e-3 if half else MIN_COSINE
        for task in tasks:
            try:
                ours = self.encode(texts, max_length, task=task, workers=1)
                if task not in self._references:  # sentence-transformers' answer does not change
                    reference = self.model.encode_query if task == "query" else self.model.encode_document
                    self._references[task] = np.asarray(
                        reference(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False),
                        dtype=np.float32,
                    )
                theirs = self._references[task]
            except Exception as exc:
                return f"self-check failed to run ({type(exc).__name__}: {exc})"
            if ours.shape != theirs.shape:
                return f"self-check shape mismatch: {ours.shape} vs sentence-transformers {theirs.shape}"
            cosine = float((ours * theirs).sum(axis=1).min())
            if not cosine >= floor:
                return f"self-check disagrees with sentence-transformers on {task}s (cosine {cosine:.6f} < {floor})"
        return None

    def _attach_onnx(self, tasks: Sequence[str]) -> None:
        """Run ``tasks`` through an ONNX Runtime export of this model where that reproduces
        sentence-transformers (the same self-check as the torch path); else keep torch."""
        from .onnx_export import attach_checked, dense_graph

        attach_checked(
            self,
            next(self.transformer.parameters()).device,
            lambda names: dense_graph(self.transformer, names),
            "mean-normalize",
            tasks,
            lambda: self._self_check(tasks),
        )

    def encode(self, texts: list[str], max_length: int, task: str = "document", workers: int | None = None):
        """(len(texts) × dim) float32 L2-normalised rows, in input order."""
        import torch

        dim = int(self.model.get_embedding_dimension() or 0)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        tokenizer = self.transformer.tokenizer
        ids, token_types, order = tokens_longest_first(self.transformer, self.model, texts, max_length, task)
        device = next(self.transformer.parameters()).device
        onnx = self.onnx if task in self.onnx_tasks else None
        workers = 1 if onnx is not None else workers or _cpu_workers(device, len(texts))
        batch_size = min(self.batch_size, -(-len(texts) // workers))
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        if self.model.training or self.transformer.training:
            self.model.eval()
        out = np.empty((len(texts), dim), dtype=np.float32)

        def encode_batch(batch: list[int]) -> None:
            features = batch_features(tokenizer, ids, token_types, batch, device)
            array = onnx.run(features) if onnx is not None else None
            if array is not None:
                out[batch] = array
                return
            with torch.inference_mode():
                tokens = self.transformer(dict(features, modality="text"))["token_embeddings"]
                mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[batch] = pooled.cpu().numpy()

        run_batches(encode_batch, batches, workers)
        return out


def _unsupported_reason(modules: list) -> str | None:
    """Why these modules are outside the fast path, or None if they are covered."""
    from sentence_transformers.models import Normalize, Pooling

    names = [type(m).__name__ for m in modules]
    if len(modules) not in (2, 3) or (len(modules) == 3 and type(modules[2]) is not Normalize):
        return f"expected Transformer + Pooling (+ Normalize), got {names}"
    transformer, pooling = modules[:2]
    if names[0] != "Transformer" or not hasattr(transformer, "auto_model"):
        return f"first module is {names[0]}, not a Transformer"
    if type(pooling) is not Pooling or pooling.pooling_mode != "mean":
        return f"second module is {names[1]} {getattr(pooling, 'pooling_mode', '')!r}, not mean Pooling"
    if not getattr(pooling, "include_prompt", True):
        return "Pooling excludes the prompt tokens"
    if getattr(transformer, "transformer_task", "feature-extraction") != "feature-extraction":
        return f"Transformer task is {transformer.transformer_task!r}"
    if getattr(transformer, "backend", "torch") != "torch":
        return f"Transformer backend is {transformer.backend!r}, not torch"
    modality_config = getattr(transformer, "modality_config", None)
    if modality_config is not None and set(modality_config) != {"text"}:
        return f"Transformer modalities are {sorted(map(str, modality_config))}, not text only"
    if getattr(transformer, "processing_kwargs", None):
        return "Transformer has custom processing_kwargs"
    if getattr(transformer, "query_expansion", None):
        return "the Transformer expands queries"
    if getattr(transformer, "tokenizer", None) is None:
        return "Transformer has no tokenizer"
    return None
