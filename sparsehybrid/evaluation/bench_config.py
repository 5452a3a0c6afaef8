"""What a benchmark run is: its configuration, methods, store naming and the machine it ran on."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..encoders.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL

#: Allowed |ours - sentence-transformers| NDCG@10: sparse search is exact, dense uses an ANN index.
PARITY_TOLERANCE = {"Sparse": 0.002, "Dense": 0.01}

PACKAGES = (
    "sparsehybrid",
    "sentence-transformers",
    "transformers",
    "torch",
    "qdrant-edge-py",
    "ir-measures",
    "pytrec-eval-terrier",
    "prefect",
    "numpy",
)


@dataclass(frozen=True)
class Method:
    """One table row kind: a search mode, whether BM25 joins the fusion, whether to rerank."""

    name: str
    mode: str
    with_bm25: bool = False
    rerank: bool = False

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclass
class BenchConfig:
    """Everything that determines the numbers (recorded verbatim in the JSON)."""

    datasets: list[str]
    out: str = "results"
    store: str | None = None
    sparse_model: str | None = DEFAULT_SPARSE_MODEL
    dense_model: str | None = DEFAULT_DENSE_MODEL
    reranker: str | None = None
    split: str = "test"
    candidates: int = 100
    #: Candidates the reranker rescores per query (None: all ``candidates``).
    rerank_top: int | None = None
    rrf_k: int = 60
    parity: bool = False
    max_queries: int | None = None
    batch_size: int = 32
    max_length: int | None = None
    device: str | None = None
    bm25: bool = True
    #: Tune fusion with cross-validation, add judgement-free rules, record the chosen setting.
    tune: bool = False
    folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("give at least one BEIR dataset folder")
        if self.sparse_model is None and self.dense_model is None and not self.bm25:
            raise ValueError("nothing to benchmark: no sparse model, no dense model and no BM25")
        if self.candidates < 10:
            raise ValueError("candidates must be >= 10 (NDCG@10 and MRR@10 need ten results)")
        if self.parity and (self.sparse_model is None or self.dense_model is None):
            raise ValueError("--parity compares both the sparse and the dense model: give both")
        if self.tune and self.folds < 2:
            raise ValueError(f"--folds must be >= 2, got {self.folds}")
        names = [Path(d).name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset folder names must be unique (they name the outputs): {names}")

    @property
    def chunking(self) -> bool:
        # sentence-transformers' evaluators truncate documents at max length; parity must too.
        return not self.parity


@dataclass
class MethodResult:
    dataset: str
    method: str
    metrics: dict[str, float]
    #: None for methods computed offline from other runs (tuned fusion), which have no latency of their own.
    p50_ms: float | None
    p95_ms: float | None
    queries: int
    run_file: str


# -- configuration helpers ---------------------------------------------------------------------
#: Appended to a method's name for its reranked row.
RERANK_SUFFIX = "+Rerank"


def methods_for(sparse: bool, dense: bool, bm25: bool, rerank: bool) -> list[Method]:
    """The rows the configured retrievers allow, in table order."""
    base = []
    if bm25:
        base.append(Method("BM25", "bm25"))
    if sparse:
        base.append(Method("Sparse", "sparse"))
    if dense:
        base.append(Method("Dense", "dense"))
    if sparse and dense:
        base.append(Method("Hybrid RRF", "hybrid"))
    if (sparse or dense) and bm25:
        base.append(Method("Hybrid RRF+BM25", "hybrid", with_bm25=True))
    if rerank:
        base += [Method(m.name + RERANK_SUFFIX, m.mode, m.with_bm25, True) for m in list(base)]
    return base


def index_fingerprint(cfg: BenchConfig) -> str:
    """Short hash of what changes the stored vectors (the corpus itself is tracked per document)."""
    blob = json.dumps(
        {
            "sparse": cfg.sparse_model,
            "dense": cfg.dense_model,
            "max_length": cfg.max_length,
            "chunking": cfg.chunking,
            "bm25": cfg.bm25,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def store_url_for(cfg: BenchConfig, dataset: str) -> str:
    """Per-dataset store: ``--store`` with ``{dataset}`` filled in (or ``-<dataset>`` appended when
    several datasets share one URL), else ``qdrant-edge://<out>/index-<dataset>-<fingerprint>``."""
    if cfg.store:
        if "{dataset}" in cfg.store:
            return cfg.store.replace("{dataset}", dataset)
        return cfg.store if len(cfg.datasets) == 1 else f"{cfg.store.rstrip('/')}-{dataset}"
    return f"qdrant-edge://{Path(cfg.out).resolve()}/index-{dataset}-{index_fingerprint(cfg)}"


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
    with contextlib.suppress(ValueError, OSError, AttributeError):
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info
