"""Shared fixtures: the real datasets in ../shared, and encoders loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the repo root (override with SPARSEHYBRID_SHARED)."""
    return Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    path = shared_dir() / "datasets"
    if not (path / "cranfield" / "corpus.jsonl").exists():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(scope="session")
def cranfield(datasets_dir: Path) -> Path:
    return datasets_dir / "cranfield"


@pytest.fixture(scope="session")
def splade():
    """The bundled SPLADE-tiny, max length 256 (loaded once)."""
    from sparsehybrid.encoders.sparse import SparseEncoder

    return SparseEncoder(max_length=256, batch_size=64)


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2 (loaded once)."""
    from sparsehybrid.encoders.dense import DenseEncoder

    return DenseEncoder()
