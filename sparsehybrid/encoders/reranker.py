"""Second-stage reranking with a cross-encoder (``sentence_transformers.CrossEncoder``).

No registry package ships cross-encoder weights, so there is no offline default: pass a model
trained with ``sparsehybrid train-reranker`` (a local folder), any CrossEncoder hub id (e.g.
``cross-encoder/ms-marco-MiniLM-L6-v2``) or a local path.

On a CPU the pairs are scored by ONNX Runtime from the checked, cached export of the loaded
weights (:mod:`.onnx_export`): the graph is the model's forward pass and its activation, fed the
features sentence-transformers' own ``preprocess`` makes (so pairs are truncated at the model's
limit exactly as ``CrossEncoder.predict`` truncates them), in batches of similar length. A
self-check against ``CrossEncoder.predict`` (within :data:`SCORE_TOLERANCE`) keeps torch when the
two disagree; ``SPARSEHYBRID_ONNX=0`` keeps torch too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .models import pick_device, resolve_model
from .onnx_export import OnnxGraph

logger = logging.getLogger(__name__)

#: Largest difference from ``CrossEncoder.predict`` the ONNX Runtime path may show.
SCORE_TOLERANCE = 1e-4
#: Pairs the self-check scores: short, long (cut at the model's limit) and mixed in one batch.
_SELF_CHECK_PAIRS = (
    ("wing flutter", "Experimental studies of flutter of swept wings at transonic speeds."),
    ("what is the boundary layer", "The boundary layer " + "separates near the trailing edge and " * 80),
    ("a", "b"),
    ("heat transfer in hypersonic flow over a blunt body", "Stagnation point heat transfer rates were measured."),
)


class Reranker:
    """Score (query, passage) pairs jointly; slower than retrieval, so applied to the top N only."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        onnx: bool = True,
    ):
        from sentence_transformers import CrossEncoder

        load_from, self.name = resolve_model(model)
        self.device = pick_device(device)
        self.model = CrossEncoder(load_from, device=self.device, max_length=max_length)
        self.batch_size = batch_size
        self.onnx: OnnxGraph | None = None
        if onnx:
            self._attach_onnx()

    @property
    def max_length(self) -> int:
        """Tokens per (query, passage) pair; longer pairs are truncated."""
        return int(self.model[0].max_seq_length or 512)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage (higher is better), in input order."""
        if not passages:
            return []
        pairs = [(query, p) for p in passages]
        if self.onnx is None:
            scores = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
            return [float(s) for s in scores]
        return [float(s) for s in self._score_onnx(pairs)]

    def _score_onnx(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Longest pairs first, ``batch_size`` at a time (little padding per batch); a batch ONNX
        Runtime fails on is scored by torch."""
        import torch

        assert self.onnx is not None
        order = np.argsort([-(len(q) + len(p)) for q, p in pairs], kind="stable")
        scores = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(pairs), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [pairs[i] for i in idx]
            features = self.model.preprocess(batch)
            out = self.onnx.run(features)
            if out is None:
                with torch.inference_mode():
                    out = self.model.predict(batch, batch_size=len(batch), show_progress_bar=False)
            scores[idx] = np.asarray(out, dtype=np.float32).reshape(len(batch), -1)[:, 0]
        return scores

    def _attach_onnx(self) -> None:
        import torch

        from .onnx_export import load_or_export, onnx_enabled

        if self.model.num_labels != 1 or not onnx_enabled(torch.device(self.device)):
            return
        features = self.model.preprocess(list(_SELF_CHECK_PAIRS))
        sample = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
        graph = cross_encoder_graph(self.model, list(sample))
        recipe = f"cross-encoder|{type(self.model.activation_fn).__name__}"
        self.onnx = load_or_export(graph, sample, recipe, torch.get_num_threads())
        if self.onnx is None:
            return
        reason = self.self_check()
        if reason is not None:
            logger.info("ONNX Runtime path not used for the reranker: %s", reason)
            self.onnx = None

    def self_check(self) -> str | None:
        """None when the ONNX Runtime scores match ``CrossEncoder.predict``, else why not."""
        pairs = list(_SELF_CHECK_PAIRS)
        expected = np.asarray(self.model.predict(pairs, batch_size=len(pairs), show_progress_bar=False))
        try:
            got = self._score_onnx(pairs)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        diff = float(np.max(np.abs(got - expected)))
        return None if diff <= SCORE_TOLERANCE else f"scores differ from CrossEncoder.predict by {diff:.2e}"

    def __repr__(self) -> str:
        backend = "onnxruntime" if self.onnx is not None else "torch"
        return f"Reranker({self.name!r}, device={self.device!r}, backend={backend!r})"


def cross_encoder_graph(model, input_names: Sequence[str]):
    """The module exported for a one-label cross-encoder: the model's score and its activation
    (what ``CrossEncoder.predict`` returns), one number per pair."""
    import torch

    class CrossEncoderGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.activation = model.activation_fn if isinstance(model.activation_fn, torch.nn.Module) else None

        def forward(self, *inputs):
            features = dict(zip(input_names, inputs), modality="text")
            scores = self.model(features)["scores"]
            if self.activation is not None:
                scores = self.activation(scores)
            return scores.reshape(scores.shape[0], -1)[:, 0]

    return CrossEncoderGraph()
