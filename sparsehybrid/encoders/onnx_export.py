"""ONNX Runtime for the fast paths' forward pass: a checked, cached export of the loaded model.

Why: on a CPU, torch spends most of a single query's time in per-call overhead of small matrix
products. Measured on this project's 2-core machine, one thread, a 17-token query: all-MiniLM-L6-v2
takes ~17 ms in torch and ~7.5 ms in ONNX Runtime; SPLADE-tiny (whose 30k-entry vocabulary
projection dominates) ~11 ms and ~6 ms. The fast encoders (:mod:`.splade_fast`,
:mod:`.dense_fast`) keep their tokenisation and batching and hand each padded batch to a graph
exported from the model that is loaded, whatever its weights:

* the graph ends where the fast path's arithmetic ends (SPLADE: masked ``log1p(relu)`` max over
  tokens; dense: masked mean pooling and L2 normalisation), so its output needs no more work;
* the export is written once under ``$SPARSEHYBRID_CACHE/onnx`` (default
  ``~/.cache/sparsehybrid``), named by a hash of the weights, the graph recipe and the torch
  version, written to a temporary file and renamed so a crash never leaves half a file;
* the caller re-runs its self-check against sentence-transformers with the graph in place, and
  drops it on any disagreement (or any error), keeping the torch path.

CPU only (the ``onnxruntime`` wheel has no CUDA provider); set ``SPARSEHYBRID_ONNX=0`` to keep torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Bump when a graph recipe changes: old cached exports are then never read again.
RECIPE_VERSION = 2
#: ``SPARSEHYBRID_ONNX`` values that turn the ONNX Runtime path off.
_OFF = frozenset({"0", "off", "no", "false"})


def onnx_enabled(device) -> bool:
    """Whether to try ONNX Runtime: a CPU model, the switch not off, the packages installed."""
    if getattr(device, "type", str(device)) != "cpu":
        return False
    if os.environ.get("SPARSEHYBRID_ONNX", "").strip().lower() in _OFF:
        return False
    try:
        import onnx  # noqa: F401  (torch's exporter writes with it)
        import onnxruntime  # noqa: F401
    except ImportError:
        logger.info("ONNX Runtime path not used: install onnxruntime and onnx (the models extra)")
        return False
    return True


def cache_dir() -> Path:
    root = os.environ.get("SPARSEHYBRID_CACHE") or Path.home() / ".cache" / "sparsehybrid"
    return Path(root) / "onnx"


class OnnxGraph:
    """One exported graph in an ONNX Runtime session: padded features in, one array out.

    ``run`` may be called from several threads at once (ONNX Runtime sessions allow it).
    """

    def __init__(self, path: Path, input_names: Sequence[str], threads: int):
        self.path = path
        self.input_names = list(input_names)
        self.threads = max(1, threads)
        self._failed = False
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: a service shares its cores with index jobs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def run(self, features: Mapping[str, Any]) -> np.ndarray | None:
        """The graph's output, or None when ONNX Runtime fails on these inputs (logged once): the
        caller then computes the batch with torch, so one odd input never fails a search."""
        feed = {name: np.ascontiguousarray(features[name].cpu().numpy(), dtype=np.int64) for name in self.input_names}
        try:
            return self.session.run(None, feed)[0]
        except Exception as exc:
            if not self._failed:
                self._failed = True
                logger.warning("ONNX Runtime failed on a batch, torch computes it: %s", str(exc).splitlines()[0][:200])
            return None

    def __repr__(self) -> str:
        return f"OnnxGraph({self.path.name})"


def attach_checked(
    encoder, device, make_graph: Callable[[list[str]], Any], recipe: str, tasks: Sequence[str], self_check
) -> None:
    """Give a fast encoder (its ``transformer``, ``model``, ``onnx``, ``onnx_tasks``) an ONNX
    Runtime graph for ``tasks``, built by ``make_graph(input names)``, where it reproduces
    sentence-transformers: ``self_check()`` (None: agreed) runs with the graph in place, and any
    disagreement leaves the encoder on torch."""
    import torch

    from .splade_fast import sample_features

    if not onnx_enabled(device):
        return
    sample = sample_features(encoder.transformer, encoder.model)
    onnx = load_or_export(make_graph(list(sample)), sample, recipe, torch.get_num_threads())
    if onnx is None:
        return
    encoder.onnx, encoder.onnx_tasks = onnx, frozenset(tasks)
    reason = self_check()
    if reason is not None:
        logger.info("ONNX Runtime path not used: %s", reason)
        encoder.onnx, encoder.onnx_tasks = None, frozenset()


def load_or_export(graph, sample: Mapping[str, Any], recipe: str, threads: int) -> OnnxGraph | None:
    """``graph`` (a torch module over ``sample``'s tensors, in their order) as an ONNX Runtime
    session, exporting it on first use; None (logged at INFO) when it cannot be exported or run.

    ``recipe`` names what the graph computes beyond its weights (e.g. the pooling), so two graphs
    over the same weights never share a file.
    """
    names = list(sample)
    path = cache_dir() / f"{fingerprint(graph, names, recipe)}.onnx"
    try:
        if path.exists():
            try:
                return OnnxGraph(path, names, threads)
            except Exception:  # a damaged cache file (a disk that filled up, a copy cut short)
                logger.info("re-exporting %s: the cached file does not load", path)
        _export(graph, sample, names, path)
        return OnnxGraph(path, names, threads)
    except Exception as exc:  # an exporter or runtime that cannot take this model: torch it is
        message = (str(exc).splitlines() or [""])[0][:200]
        logger.info("ONNX Runtime path not used: %s: %s", type(exc).__name__, message)
        return None


def fingerprint(graph, input_names: Sequence[str], recipe: str) -> str:
    """A name for the export of ``graph``: its weights, inputs, recipe and the exporter."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{RECIPE_VERSION}|{recipe}|{','.join(input_names)}|{torch.__version__}".encode())
    for name, tensor in graph.state_dict().items():
        digest.update(f"|{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _export(graph, sample: Mapping[str, Any], names: list[str], path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["output"] = {0: "batch"}
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing are not the user's concern
            torch.onnx.export(
                graph.eval(),
                tuple(sample[name] for name in names),
                tmp,
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("exported %s for ONNX Runtime", path)


def splade_graph(transformer, input_names: Sequence[str], activation: str):
    """The module exported for a SPLADE model: MLM logits, then the max over real tokens of
    ``log1p(relu(logits))`` (``log1p`` once more for ``log1p_relu``)."""
    import torch

    class SpladeGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            features = dict(zip(input_names, inputs))
            logits = self.transformer(dict(features, modality="text"))["token_embeddings"]
            # log1p ∘ relu is monotone, so it commutes with the max: take the max over real tokens
            # first (padded positions at -inf never win) and apply it to one row per text, not to
            # every (token, vocabulary entry) as sentence-transformers does. Same values exactly.
            padded = features["attention_mask"].unsqueeze(-1) == 0
            pooled = logits.masked_fill(padded, float("-inf")).amax(dim=1)
            weights = torch.log1p(torch.relu(pooled))
            if activation == "log1p_relu":
                weights = torch.log1p(weights)
            return weights

    return SpladeGraph()


def dense_graph(transformer, input_names: Sequence[str]):
    """The module exported for a mean-pooling model: token embeddings, masked mean, L2
    normalisation (``Pooling(mean)`` + ``Normalize``)."""
    import torch

    class DenseGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            features = dict(zip(input_names, inputs))
            tokens = self.transformer(dict(features, modality="text"))["token_embeddings"]
            mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return DenseGraph()
