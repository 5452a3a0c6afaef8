"""Searches through ``sparsehybrid serve`` keep succeeding while an index job writes to the same
embedded store (through the service), see each batch as soon as it is acknowledged, and a
kill -9 of the service loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from sparsehybrid.client import SearchClient
from sparsehybrid.connectors import StoreLockedError, open_index_sink, open_store
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.connectors.service_store import ServiceStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.service import discovery
from sparsehybrid.types import Chunk, PointRecord
from tests.conftest import cli_env
from tests.support import as_documents, cranfield_rows, free_port


def start_service(store: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", f"qdrant-edge://{store}", "--port", str(port)]
    proc = subprocess.Popen([*cmd, *extra], env=cli_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    return wait_ready(proc, port, log)


def wait_ready(proc: subprocess.Popen, port: int, log: Path) -> subprocess.Popen:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["ready"]:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tiny_sparse(tiny_splade_dir):
    from sparsehybrid.encoders.sparse import SparseEncoder

    return SparseEncoder(tiny_splade_dir, max_length=128, batch_size=32)


def test_searches_succeed_while_a_job_indexes_through_the_service_and_survive_kill_9(
    tmp_path, cranfield, tiny_sparse, monkeypatch
):
    monkeypatch.setenv("SPARSEHYBRID_JOB_NICE", "0")  # the job is this test process: keep its priority
    rows = cranfield_rows(cranfield, 300)
    for i, r in enumerate(rows):
        r["n"] = i
    docs = as_documents(rows)
    path = tmp_path / "idx"
    first = QdrantEdgeStore(path)
    Indexer(first, tiny_sparse, bm25=True, batch_size=32).index(docs[:40])
    first.close()

    port = free_port()
    proc = start_service(path, port, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        failures: list[str] = []
        searches = [0]
        done = threading.Event()

        def search_loop() -> None:
            with SearchClient(url, retries=0) as client:
                while not done.is_set():
                    try:
                        client.search("boundary layer flow", top_k=5, mode="hybrid")
                        searches[0] += 1
                    except Exception as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=search_loop) for _ in range(3)]
        for t in threads:
            t.start()
        with pytest.raises(StoreLockedError, match="open in the search service"):
            open_store(f"qdrant-edge://{path}")  # the engine admits one process: not opened a second time
        store = open_index_sink(f"qdrant-edge://{path}")  # the job's view: the service owns the store
        assert isinstance(store, ServiceStore)
        seen_within: list[float] = []

        def acknowledged(stats) -> None:  # after each batch is written: searchable at once?
            if stats.batches_done:
                t0 = time.monotonic()
                last = docs[40 + stats.encoded - 1]
                while not SearchClient(url).search(
                    last.text[:60], top_k=1, mode="bm25", filter={"n": last.metadata["n"]}
                ):
                    assert time.monotonic() - t0 < 5, f"{last.id} not searchable 5 s after its batch was acknowledged"
                    time.sleep(0.05)
                seen_within.append(time.monotonic() - t0)

        stats = Indexer(store, tiny_sparse, bm25=True, batch_size=32).index(docs, on_batch=acknowledged)
        # One more write, acknowledged but never flushed: the kill -9 below must not lose it.
        late = Chunk("late", 0, "a late arrival", 0, 14, metadata={"n": 999}, content_hash="h")
        assert store.upsert([PointRecord(late, tiny_sparse.encode_document([late.text])[0])]) == 1
        store.close()
        done.set()
        for t in threads:
            t.join()
        assert stats.added == 260 and not stats.rejected
        assert failures == [] and searches[0] > 0
        assert len(seen_within) == stats.batches and max(seen_within) < 5
        with SearchClient(url) as client:
            info = client.info()
            assert info["documents"] == 301
            for d in docs[40::37]:
                hits = client.search(d.text[:60], top_k=1, mode="bm25", filter={"n": d.metadata["n"]})
                assert [h.doc_id for h in hits] == [d.id]
            # The CLI's `search` on a served store asks the service instead of failing on the lock.
            want = [h.doc_id for h in client.search("shock waves", top_k=4, mode="sparse")]
        cmd = [sys.executable, "-m", "sparsehybrid.cli", "search", "shock waves", "--store", f"qdrant-edge://{path}"]
        out = subprocess.run(
            [*cmd, "--mode", "sparse", "-k", "4", "--json"], env=cli_env(), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert [h["doc_id"] for h in json.loads(out.stdout)] == want
        # So does `info` (the engine admits no second process to open it).
        cmd = [sys.executable, "-m", "sparsehybrid.cli", "info", "--store", f"qdrant-edge://{path}", "--json"]
        out = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["documents"] == 301
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    # The service died without a word: its file is stale, the store opens directly and is whole.
    assert (path / discovery.SERVICE_FILE).exists() and discovery.read(path) is None
    reopened = open_store(f"qdrant-edge://{path}")
    assert isinstance(reopened, QdrantEdgeStore)
    try:
        assert reopened.count() == info["points"] and len(reopened.document_states()) == 301
        assert [p.payload["text"] for p in reopened.get([late.point_id])] == ["a late arrival"]
    finally:
        reopened.close()


def test_serve_refuses_a_non_loopback_address_without_an_api_key(tmp_path):
    env = {k: v for k, v in cli_env().items() if k != "SPARSEHYBRID_API_KEY"}
    cmd = [
        sys.executable,
        "-m",
        "sparsehybrid.cli",
        "serve",
        "--store",
        f"qdrant-edge://{tmp_path}/idx",
        "--host",
        "0.0.0.0",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "binding 0.0.0.0 exposes the index beyond this machine: set SPARSEHYBRID_API_KEY" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "idx").exists()  # refused before touching the store


def test_serve_waits_for_a_job_that_opened_the_store_first(tmp_path, cranfield, tiny_sparse):
    path, log, port = tmp_path / "idx", tmp_path / "serve.log", free_port()
    held = QdrantEdgeStore(path)  # an index job that started while no service ran: it holds the lock
    Indexer(held, tiny_sparse, bm25=True).index(as_documents(cranfield_rows(cranfield, 10)))
    cmd = [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", f"qdrant-edge://{path}", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--wait-for-store", "120"], env=cli_env(), stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while "waiting up to 120 s for the process writing" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        held.close()  # the job ends
        wait_ready(proc, port, log)
        with SearchClient(f"http://127.0.0.1:{port}") as client:
            assert client.info()["documents"] == 10
    finally:
        held.close()
        proc.terminate()
        proc.wait(30)
    assert not (path / discovery.SERVICE_FILE).exists()  # a clean stop withdraws the service file


@pytest.mark.parametrize(("setting", "step"), [(None, 10), ("3", 3), ("0", 0)])
def test_a_job_writing_through_a_service_yields_the_cpu_to_searches(setting, step):
    code = (
        "import os; from sparsehybrid.connectors.service_store import yield_cpu_to_searches as y; "
        "before = os.nice(0); y(); y(); print(os.nice(0) - before, before)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SPARSEHYBRID_JOB_NICE"}
    if setting is not None:
        env["SPARSEHYBRID_JOB_NICE"] = setting
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    applied, before = map(int, out.stdout.split())
    # Once per process, however many stores it opens (capped at niceness 19 when run under `nice`).
    assert applied == min(step, 19 - before)
