"""Every CLI failure is one line: client libraries' retry tracebacks and warnings are dropped
unless --verbose, and a value with a newline cannot split the line (issue 23)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import cli_env
from tests.support import free_port, write_jsonl


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparsehybrid.cli", *args], capture_output=True, text=True, timeout=300, env=cli_env()
    )


def lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def test_a_closed_qdrant_server_is_one_line_without_the_clients_warning():
    out = run_cli("search", "wing", "--store", f"qdrant://127.0.0.1:{free_port()}/docs")
    assert out.returncode == 1
    assert len(lines(out)) == 1 and "unavailable" in lines(out)[0], lines(out)


def test_a_store_url_with_a_newline_stays_on_one_line(tmp_path):
    out = run_cli("search", "wing", "--store", f"qdrant-edge://{tmp_path}/x\nbad")
    assert out.returncode == 1
    assert len(lines(out)) == 1 and "\\nbad" in lines(out)[0], lines(out)


@pytest.mark.slow  # the index command starts a temporary Prefect API
def test_index_into_a_closed_opensearch_is_one_line(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "1", "text": "wing flutter"}])
    out = run_cli(
        "index", str(src), "--store", f"opensearch://127.0.0.1:{free_port()}/idx", "--sparse-model", "none",
        "--dense-model", "none",
    )  # fmt: skip
    assert out.returncode == 1
    assert len(lines(out)) == 1 and "unavailable" in lines(out)[0], lines(out)
    assert "Traceback" not in out.stderr


def test_a_config_whose_model_path_is_a_file_is_one_line(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "1", "text": "wing flutter"}])
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"source: {{path: {src}}}\nstore: qdrant-edge://{tmp_path / 'idx'}\nmodels: {{sparse: {src}}}\n")
    out = run_cli("index", "--config", str(cfg))
    assert out.returncode == 1
    assert len(lines(out)) == 1, lines(out)
    assert "models.sparse" in lines(out)[0] and "is a file, not a model" in lines(out)[0]


@pytest.mark.slow  # the index command starts a temporary Prefect API
def test_a_run_that_rejected_records_ends_without_a_log_shipping_error(tmp_path):
    rows = [{"_id": "1", "text": "wing flutter"}, {"_id": "2", "text": ""}]
    src = write_jsonl(tmp_path / "docs.jsonl", rows)
    out = run_cli(
        "index", str(src), "--store", f"qdrant-edge://{tmp_path / 'idx'}", "--sparse-model", "none",
        "--dense-model", "none",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "rejected 2, field 'text'" in out.stdout + out.stderr
    assert "Error logging to API" not in out.stderr and "connection attempts failed" not in out.stderr
