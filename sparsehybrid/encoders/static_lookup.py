"""Inference-free SPLADE queries as a table lookup (issue 14).

Inference-free sparse models (``Router`` with a ``SparseStaticEmbedding`` query route, e.g.
OpenSearch's ``opensearch-neural-sparse-encoding-doc-*``) weight a query's tokens from a fixed
per-token table: no network runs. sentence-transformers still builds a padded tensor batch, a
vocabulary-wide presence matrix and a dense product per call; for one query that generic path is
milliseconds of overhead around a few dictionary reads. This module reads the table directly.

It covers a query route that is exactly ``[SparseStaticEmbedding]`` (with no prompt and no
``max_active_dims``), and checks itself against ``encode_query`` at construction; anything else
keeps sentence-transformers' path.
"""

from __future__ import annotations

import logging

from ..types import SparseVector
from .splade_fast import _SELF_CHECK_TEXTS, _route_modules, task_prompt

logger = logging.getLogger(__name__)


class StaticQueryLookup:
    """Query vectors of an inference-free model: each distinct token of the query (no special
    tokens, truncated at the tokenizer's limit) with its table weight, as ``encode_query``."""

    def __init__(self, tokenizer, weights: list[float], max_length: int | None):
        self.tokenizer = tokenizer
        self.weights = weights
        self.max_length = max_length

    @classmethod
    def from_sentence_transformer(cls, model) -> StaticQueryLookup | None:
        """A lookup for ``model``'s query route, or None (logged at INFO) where it is not covered."""
        from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

        try:
            route = _route_modules(model, "query")
        except Exception as exc:
            logger.info("query lookup not used: could not inspect the model (%s)", exc)
            return None
        if len(route) != 1 or type(route[0]) is not SparseStaticEmbedding:
            return None  # not inference-free: the query runs a network
        if task_prompt(model, "query") or getattr(model, "max_active_dims", None):
            logger.info("query lookup not used: the model sets a query prompt or max_active_dims")
            return None
        static = route[0]
        lookup = cls(static.tokenizer, static.weight.detach().float().cpu().tolist(), static.max_seq_length)
        reason = lookup._self_check(model)
        if reason is not None:
            logger.info("query lookup not used: %s", reason)
            return None
        return lookup

    def encode(self, texts: list[str]) -> list[SparseVector]:
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
        )
        vectors = []
        for ids in encoded["input_ids"]:
            tokens = sorted(set(ids))
            weights = [self.weights[i] for i in tokens]
            kept = [(i, w) for i, w in zip(tokens, weights) if w > 0]
            vectors.append(SparseVector([i for i, _ in kept], [w for _, w in kept]))
        return vectors

    def _self_check(self, model) -> str | None:
        import torch

        texts = [*_SELF_CHECK_TEXTS, "wing wing WING"]
        try:
            theirs = model.encode_query(texts, convert_to_tensor=True, convert_to_sparse_tensor=False).float().cpu()
            ours = torch.zeros_like(theirs)
            for row, vector in enumerate(self.encode(texts)):
                ours[row, vector.indices] = torch.tensor(vector.values, dtype=ours.dtype)
        except Exception as exc:
            return f"self-check failed to run ({type(exc).__name__}: {exc})"
        diff = float((ours - theirs).abs().max())
        if not diff <= 1e-5:
            return f"self-check disagrees with sentence-transformers (max |diff| = {diff:.3g})"
        return None
