"""Second-stage reranking with a cross-encoder (``sentence_transformers.CrossEncoder``).

No registry package ships cross-encoder weights, so there is no offline default: pass any
CrossEncoder hub id (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``) or a local path.
"""

from __future__ import annotations

from collections.abc import Sequence

from .models import pick_device, resolve_model


class Reranker:
    """Score (query, passage) pairs jointly; slower than retrieval, so applied to the top N only."""

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 32, max_length: int | None = None):
        from sentence_transformers import CrossEncoder

        load_from, self.name = resolve_model(model)
        self.device = pick_device(device)
        self.model = CrossEncoder(load_from, device=self.device, max_length=max_length)
        self.batch_size = batch_size

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage (higher is better), in input order."""
        if not passages:
            return []
        scores = self.model.predict([(query, p) for p in passages], batch_size=self.batch_size, show_progress_bar=False)
        return [float(s) for s in scores]

    def __repr__(self) -> str:
        return f"Reranker({self.name!r}, device={self.device!r})"
