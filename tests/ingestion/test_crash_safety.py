"""Crash safety: ``kill -9`` during indexing (upserts, and the ``--sync`` deletion pass), then a
re-run: no duplicates, no losses; the embedded store reopens after every crash with a count that
agrees with its document states. BM25-only runs keep these fast (no model to load)."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from tests.conftest import cli_env, index_command
from tests.support import as_documents, cranfield_rows, write_jsonl


def check_consistent(path: Path, rows_by_version: list[list[dict]]) -> dict[str, tuple[str, int]]:
    """Reopen after a crash: it must open, count every chunk once, and hold only whole documents
    whose content is one of the given corpus versions."""
    store = QdrantEdgeStore(path)
    try:
        states = store.document_states()
        assert store.count() == sum(n for _, n in states.values())
        payloads = list(store.iter_points())
        assert len({p.id for p in payloads}) == len(payloads)
        allowed: dict[str, set[str]] = {}
        for rows in rows_by_version:
            for d in as_documents(rows):
                allowed.setdefault(d.id, set()).add(d.content_hash())
        for doc_id, (h, _) in states.items():
            assert h in allowed.get(doc_id, ()), f"{doc_id} holds content from no corpus version"
    finally:
        store.close()
    return states


def assert_exactly(path: Path, rows: list[dict]) -> None:
    store = QdrantEdgeStore(path)
    try:
        want = {d.id: d.content_hash() for d in as_documents(rows)}
        assert {k: h for k, (h, _) in store.document_states().items()} == want
        assert store.count() == len(rows)  # BM25-only: one point per document
    finally:
        store.close()


def cli(source: Path, store: Path, prefect_api: str, *extra: str) -> list[str]:
    return index_command(source, store, "--sparse-model", "none", "--dense-model", "none", *extra)


def run_and_kill(cmd: list[str], prefect_api: str, trigger: re.Pattern, after: int, delay: float) -> list[str]:
    """Run ``cmd``; SIGKILL it ``delay`` seconds after the ``after``-th output line matching ``trigger``."""
    env = cli_env(prefect_api)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    log, hits = [], 0
    try:
        while hits < after:
            line = lines.get(timeout=240)
            log.append(line)
            hits += bool(trigger.search(line))
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "".join(log)
    return log


def run_to_end(cmd: list[str], prefect_api: str) -> str:
    env = cli_env(prefect_api)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_kill_9_during_upserts_then_rerun(prefect_api, cranfield, tmp_path):
    rows = cranfield_rows(cranfield, 300)
    src, idx = write_jsonl(tmp_path / "c.jsonl", rows), tmp_path / "idx"
    cmd = cli(src, idx, prefect_api, "--batch-size", "10")
    run_and_kill(cmd, prefect_api, re.compile(r"batch \d+/\d+ written"), after=3, delay=random.uniform(0, 0.3))
    states = check_consistent(idx, [rows])
    assert 30 <= len(states) < 300  # killed mid-way, and what was acknowledged survived
    run_to_end(cmd, prefect_api)
    assert_exactly(idx, rows)


def test_kill_9_during_the_sync_deletion_pass_then_rerun(prefect_api, cranfield, tmp_path):
    v1 = cranfield_rows(cranfield, 300)
    v2 = [dict(r, text=r["text"] + " (revised)") if i % 30 == 0 else r for i, r in enumerate(v1) if i % 3 == 0]
    idx = tmp_path / "idx"
    store = QdrantEdgeStore(idx)
    Indexer(store, bm25=True).index(as_documents(v1))
    store.close()
    src = write_jsonl(tmp_path / "c.jsonl", v2)
    # Two thirds of the collection leave the source: a mass delete, allowed explicitly.
    cmd = cli(src, idx, prefect_api, "--sync", "--allow-mass-delete", "--batch-size", "5")
    run_and_kill(
        cmd, prefect_api, re.compile(r"\d+ documents: \d+ to encode"), after=1, delay=random.uniform(0.05, 0.6)
    )
    states = check_consistent(idx, [v1, v2])
    assert {r["_id"] for r in v2} <= set(states)  # a deletion pass never deletes what the source still has
    run_to_end(cmd, prefect_api)
    assert_exactly(idx, v2)


WRITER = """
import json, sys
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document
rows = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
docs = [Document(r["_id"], r["text"], r.get("title")) for r in rows]
store = QdrantEdgeStore(sys.argv[1])
ix = Indexer(store, bm25=True, batch_size=2)
print("start", flush=True)
ix.index(docs, on_batch=lambda s: print("batch", s.added, flush=True))
ix.index(docs[: len(docs) // 4], sync=True, allow_mass_delete=True)  # a long deletion pass, in batches
print("done", flush=True)
"""


def test_embedded_store_survives_kill_9_mid_write(cranfield, tmp_path):
    rows = cranfield_rows(cranfield, 600)
    src, idx = write_jsonl(tmp_path / "c.jsonl", rows), tmp_path / "idx"
    seen_states = []
    for delay in (0.2, 0.8, 1.6, 3.0):  # in the upserts, and (later kills) possibly in the deletion pass
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(idx), str(src)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        seen_states.append(len(check_consistent(idx, [rows])))
    assert any(0 < n < 600 for n in seen_states), seen_states  # at least one kill landed mid-run
    store = QdrantEdgeStore(idx)
    stats = Indexer(store, bm25=True).index(as_documents(rows), sync=True)
    assert stats.added + stats.unchanged == 600
    store.close()
    assert_exactly(idx, rows)
