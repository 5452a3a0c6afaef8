"""Ctrl-C, SIGTERM and kill -9 of `sparsehybrid index`: the run stops between batches with exit
130/143 and a line saying how to resume, and no process it started outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from tests.conftest import index_command
from tests.support import cranfield_rows, write_jsonl

pytestmark = pytest.mark.slow


def _start(tmp_path: Path, src: Path, model: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "out.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # our own temporary API
    env.update(COLUMNS="200", HF_HUB_OFFLINE="1")
    cmd = index_command(
        src,
        tmp_path / "idx",
        "--sparse-model",
        model,
        "--dense-model",
        "none",
        "--max-length",
        "64",
        "--batch-size",
        "2",
    )
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    deadline = time.time() + 240
    while "batch 2/" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.time() < deadline, log.read_text()
        time.sleep(0.2)
    return proc, log


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_between_batches_and_it_resumes(tmp_path, cranfield, tiny_splade_dir, signum, code):
    rows = cranfield_rows(cranfield, 120)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    proc, log = _start(tmp_path, src, tiny_splade_dir)
    children = _children(proc.pid)
    assert children, "the temporary Prefect API runs as a child"
    t0 = time.monotonic()
    os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C does: the whole process group
    proc.wait(60)
    took = time.monotonic() - t0
    out = log.read_text()
    assert proc.returncode == code, out
    assert "run the same command again to resume" in out and "Traceback" not in out
    assert took < 30, took  # measured ~3 s here; the bound only catches a run that ignores the signal
    time.sleep(1)
    assert not [c for c in children if _alive(c)], "a process the CLI started outlived it"
    store = QdrantEdgeStore(tmp_path / "idx")
    written = len(store.document_states())
    store.close()
    assert 0 < written < len(rows)
    again = subprocess.run(
        index_command(
            src, tmp_path / "idx", "--sparse-model", tiny_splade_dir, "--dense-model", "none", "--max-length", "64"
        ),
        env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{written} unchanged" in again.stdout
    store = QdrantEdgeStore(tmp_path / "idx")
    assert set(store.document_states()) == {r["_id"] for r in rows}
    store.close()


def test_kill_9_of_the_cli_leaves_no_process_behind(tmp_path, cranfield, tiny_splade_dir):
    src = write_jsonl(tmp_path / "c.jsonl", cranfield_rows(cranfield, 80))
    proc, _ = _start(tmp_path, src, tiny_splade_dir)
    children = _children(proc.pid)
    assert children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.time() + 10
    while [c for c in children if _alive(c)] and time.time() < deadline:
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)], "the temporary Prefect API was orphaned"
