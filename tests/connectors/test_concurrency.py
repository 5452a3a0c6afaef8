"""Concurrency: searches from several threads while an index job writes to the same embedded
store object; a second process on the same embedded index is refused, not allowed to corrupt it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import HybridSearcher
from tests.support import as_documents, cranfield_rows

PAYLOAD_KEYS = {"doc_id", "chunk", "n_chunks", "start", "end", "text", "title", "metadata", "content_hash"}


def test_searches_during_indexing_see_consistent_states(tmp_path, cranfield, tf_encoder):
    rows = cranfield_rows(cranfield, 400)
    for i, r in enumerate(rows):
        r["group"] = i % 5
    docs = as_documents(rows)
    texts = {d.id: d.text for d in docs}
    store = QdrantEdgeStore(tmp_path / "idx")
    Indexer(store, tf_encoder, bm25=True, batch_size=8).index(docs[:8])
    searcher = HybridSearcher(store, tf_encoder)
    errors: list[str] = []
    done = threading.Event()
    per_thread: list[tuple[int, list[int]]] = []
    queries = ["wing flutter", "boundary layer heat transfer", "buckling of shells", "supersonic inlet"]

    def search_loop(k: int) -> None:
        counts, n = [], 0
        while not done.is_set() or n == 0:
            try:
                counts.append(store.count())
                hits = searcher.search(queries[k % 4], top_k=10, mode="hybrid", filter={"group": k % 5})
                for h in hits:
                    assert h.doc_id in texts and h.text in texts[h.doc_id] and h.metadata == {"group": k % 5}
                for p in store.search_fused(text=queries[k % 4], limit=10) + store.search_bm25(queries[k % 4], 10):
                    assert set(p.payload) >= PAYLOAD_KEYS and p.payload["doc_id"] in texts
                n += 1
            except Exception as exc:  # collected: a thread's exception would otherwise be lost
                errors.append(f"{type(exc).__name__}: {exc}")
                return
        per_thread.append((n, counts))

    threads = [threading.Thread(target=search_loop, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        stats = Indexer(store, tf_encoder, bm25=True, batch_size=8).index(docs)
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert errors == []
    states = store.document_states()
    assert stats.added == 392 and set(states) == set(texts)
    assert store.count() == sum(n for _, n in states.values())  # every chunk of every document, once
    for n, counts in per_thread:
        assert counts == sorted(counts)  # a reader never sees the collection shrink
        assert n >= 2
    assert min(c[0] for _, c in per_thread) < store.count()  # searches really overlapped the writes
    store.close()


HOLD = """
import sys, time
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
store = QdrantEdgeStore(sys.argv[1])
print("holding", store.count(), flush=True)
sys.stdin.readline()
"""

OPEN = """
import sys
from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
try:
    QdrantEdgeStore(sys.argv[1])
except StoreLockedError as exc:
    print("LOCKED:", exc)
else:
    print("OPENED")
"""


def test_a_second_process_on_the_same_embedded_index_is_refused(tmp_path, cranfield):
    docs = as_documents(cranfield_rows(cranfield, 30))
    path = tmp_path / "idx"
    store = QdrantEdgeStore(path)
    Indexer(store, bm25=True).index(docs)
    before = store.document_states()

    other = subprocess.run([sys.executable, "-c", OPEN, str(path)], capture_output=True, text=True, timeout=120)
    assert other.stdout.startswith("LOCKED:"), other.stdout + other.stderr
    assert "open for writing in another process" in other.stdout and str(path) in other.stdout
    assert store.document_states() == before and store.count() == 30  # the refused process changed nothing

    store.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding 30"
        with pytest.raises(StoreLockedError, match="open for writing in another process"):
            QdrantEdgeStore(path)
    finally:
        holder.communicate("\n", timeout=60)
    reopened = QdrantEdgeStore(path)  # the lock goes with its holder
    assert reopened.document_states() == before
    reopened.close()


SEARCH_LOOP = """
import sys, time
from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        store = QdrantEdgeStore(sys.argv[1])
    except StoreLockedError:
        continue
    store.search_bm25("document text", 5)
    store.close()
"""


def _numbered(first: int, last: int) -> list:
    from sparsehybrid.types import Document

    return [
        Document(id=str(i), text=f"document {i} text on topic {i % 7} words {i * 3}") for i in range(first, last + 1)
    ]


def _open_when_free(path, seconds: float = 60.0) -> QdrantEdgeStore:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return QdrantEdgeStore(path)
        except StoreLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def test_processes_opening_the_store_never_lose_a_writers_acknowledged_documents(tmp_path):
    """Issue 23: searches in other processes opening the store while a sync job wrote made the
    job's added documents vanish (the engine's loader rewrote segment files before its lock)."""
    for trial in range(3):
        path = tmp_path / f"idx{trial}"
        store = QdrantEdgeStore(path)
        Indexer(store, bm25=True, batch_size=100).index(_numbered(1, 200))
        store.close()
        loops = [
            subprocess.Popen([sys.executable, "-c", SEARCH_LOOP, str(path), "8"], stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        try:
            time.sleep(0.5)
            store = _open_when_free(path)
            stats = Indexer(store, bm25=True, batch_size=50).index(_numbered(11, 300), sync=True)
            store.close()
        finally:
            errors = [loop.communicate(timeout=120)[1] for loop in loops]
        assert (stats.added, stats.deleted) == (100, 10)
        assert [e for e in errors if e.strip()] == []
        store = QdrantEdgeStore(path)
        assert set(store.document_states()) == {str(i) for i in range(11, 301)}, f"trial {trial}"
        assert store.count() == 290
        store.close()
