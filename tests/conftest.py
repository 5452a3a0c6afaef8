"""Shared fixtures: the real datasets in ../shared, and encoders loaded once per session."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# In-process CLI tests (CliRunner) hand Prefect's log handlers a captured stream that is closed
# when the invocation ends; Prefect's background workers can still log to it later, and logging
# then prints "--- Logging error ---" with a traceback into whatever a *later* test captures. A
# real CLI process exits with its streams, so this is an artefact of sharing one test process.
logging.raiseExceptions = False

REPO = Path(__file__).resolve().parents[1]


#: Set by .ci/run: there ../shared must exist, so a missing dataset fails the run instead of
#: quietly skipping the tests that need it.
REQUIRE_SHARED = os.environ.get("SPARSEHYBRID_REQUIRE_SHARED") == "1"
#: Tests that use these fixtures load real models: marked ``slow`` (``pytest -m "not slow"`` skips them).
SLOW_FIXTURES = frozenset({"splade", "minilm", "bench_out"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _restore_environ():
    """Each test leaves ``os.environ`` as it found it. A CLI command run in-process (Typer's
    runner) sets variables for what it thinks is its own process (quiet logging, no progress
    bars): without this, they would reach whichever test the same worker runs next."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


def missing_shared(reason: str) -> None:
    """Skip a test whose shared data is absent, or fail it where CI promised the data."""
    if REQUIRE_SHARED:
        pytest.fail(f"{reason} (SPARSEHYBRID_REQUIRE_SHARED=1)")
    pytest.skip(reason)


def shared_dir() -> Path:
    """``../shared`` beside the repo root (override with SPARSEHYBRID_SHARED)."""
    return Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    path = shared_dir() / "datasets"
    if not (path / "cranfield" / "corpus.jsonl").exists():
        missing_shared(f"shared datasets not found at {path}")
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


@pytest.fixture(scope="session")
def tiny_splade_dir(tmp_path_factory) -> str:
    """A random-weight BERT MLM (1 layer, hidden 32) with SPLADE-tiny's tokenizer: a real
    ``SparseEncoder`` model that loads in a second (plumbing tests, not quality)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from sparsehybrid.encoders.models import resolve_model

    path = tmp_path_factory.mktemp("tiny-mlm")
    tok = AutoTokenizer.from_pretrained(resolve_model("splade-tiny")[0])
    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    )
    with torch.no_grad():
        model.cls.predictions.bias.fill_(-0.4)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def prefect_api():
    """A temporary Prefect API (the CLI's ``index`` runs a flow); yields its URL for subprocesses."""
    pytest.importorskip("prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def index_command(source: Path, store: Path, *extra: str) -> list[str]:
    """``sparsehybrid index SOURCE --store qdrant-edge://STORE ...`` as the user types it."""
    return [sys.executable, "-m", "sparsehybrid.cli", "index", str(source), "--store", f"qdrant-edge://{store}", *extra]


def cli_env(prefect_api: str | None = None, **extra: str) -> dict[str, str]:
    """The environment a CLI subprocess runs in: wide columns (no wrapped lines), offline models,
    and the given Prefect API (None: the CLI starts its own temporary one)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(COLUMNS="200", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    return env


@pytest.fixture(scope="session")
def tf_encoder():
    """A custom sparse encoder with no model weights (``tests.support.TermFrequencySparseEncoder``)."""
    from tests.support import TermFrequencySparseEncoder

    return TermFrequencySparseEncoder()
