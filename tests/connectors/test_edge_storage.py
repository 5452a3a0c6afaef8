"""The embedded store's ``?storage=disk`` mode: the same answers as ``ram``, kept when reopened."""

from __future__ import annotations

import json

import pytest

from sparsehybrid.connectors import open_store
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.connectors.transfer import same_ranking

from .conformance import SCHEMA, make_records


def test_disk_storage_answers_as_ram_storage(tmp_path):
    records = make_records(60, chunks_per_doc=2)
    stores = {mode: open_store(f"qdrant-edge://{tmp_path / mode}?storage={mode}") for mode in ("ram", "disk")}
    try:
        for store in stores.values():
            store.ensure_schema(SCHEMA)
            store.upsert(records)
            store.optimize()
        ram, disk = stores["ram"], stores["disk"]
        assert isinstance(disk, QdrantEdgeStore) and disk.storage == "disk"
        for q in records[:5]:
            for want, got in (
                (ram.search_sparse(q.sparse, 10), disk.search_sparse(q.sparse, 10)),
                (ram.search_dense(q.dense, 10), disk.search_dense(q.dense, 10)),
                (ram.search_bm25(q.chunk.text, 10), disk.search_bm25(q.chunk.text, 10)),
            ):
                assert want and same_ranking(want, got)
    finally:
        for store in stores.values():
            store.close()
    config = json.loads((tmp_path / "disk" / "shard" / "edge_config.json").read_text())
    assert "cold" in json.dumps(config).lower()  # the shard itself recorded the placement
    with open_store(f"qdrant-edge://{tmp_path / 'disk'}") as reopened:  # no option: the shard keeps it
        assert reopened.count() == 120


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_a_store_reopened_without_the_option_keeps_its_mode(tmp_path, mode):
    """Found copying stores: the engine's load writes its defaults into the shard's config,
    payloads "cold" among them, so a ``ram`` store opened once more read as ``disk``."""
    with open_store(f"qdrant-edge://{tmp_path / 's'}?storage={mode}") as store:
        store.ensure_schema(SCHEMA)
        store.upsert(make_records(5))
    for _ in range(2):
        with open_store(f"qdrant-edge://{tmp_path / 's'}") as reopened:
            assert isinstance(reopened, QdrantEdgeStore) and reopened.storage == mode


def test_an_unknown_storage_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="storage must be one of ram, disk"):
        open_store(f"qdrant-edge://{tmp_path / 'x'}?storage=tape")


OPEN_ELSEWHERE = """
import sys
from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
try:
    QdrantEdgeStore(sys.argv[1])
except StoreLockedError:
    print("LOCKED")
else:
    print("OPENED")
"""


def test_a_disk_store_builds_in_bounded_steps_and_keeps_its_lock(tmp_path, monkeypatch):
    """Issue 21: a ``disk`` store optimizes every DISK_OPTIMIZE_EVERY written points and reloads
    its shard (memory flat at a million points); the answers, the count and the process lock
    are unchanged by it, and a store reopened without the option keeps building that way."""
    import subprocess
    import sys

    from sparsehybrid.connectors import qdrant_edge

    monkeypatch.setattr(qdrant_edge, "DISK_OPTIMIZE_EVERY", 40)
    records = make_records(50, chunks_per_doc=2)  # 100 points: two bounded steps on the way
    path = tmp_path / "big"
    store = open_store(f"qdrant-edge://{path}?storage=disk")
    reference = open_store(f"qdrant-edge://{tmp_path / 'ref'}")
    try:
        for store_ in (store, reference):
            store_.ensure_schema(SCHEMA)
        for start in range(0, 100, 20):
            store.upsert(records[start : start + 20])
            other = subprocess.run(
                [sys.executable, "-c", OPEN_ELSEWHERE, str(path)], capture_output=True, text=True, timeout=120
            )
            assert other.stdout.strip() == "LOCKED", other.stdout + other.stderr  # held across each reload
        reference.upsert(records)
        assert store._unoptimized == 20  # two steps of 40 taken, 20 points waiting for the next one
        assert store.count() == 100
        for q in records[:5]:
            assert same_ranking(reference.search_sparse(q.sparse, 10), store.search_sparse(q.sparse, 10))
            assert same_ranking(reference.search_bm25(q.chunk.text, 10), store.search_bm25(q.chunk.text, 10))
    finally:
        store.close()
        reference.close()
    with open_store(f"qdrant-edge://{path}") as reopened:
        assert isinstance(reopened, QdrantEdgeStore) and reopened.storage == "disk"
        assert reopened.count() == 100


def test_searches_during_a_disk_store_bounded_step_wait_for_it_and_answer(tmp_path, monkeypatch):
    """A ``disk`` store reloads its shard after each bounded step; searches and counts from other
    threads meanwhile (a service answering while a job writes) must neither fail nor see an
    empty store: they wait for the reload. Before, a search in that window raised "holds no
    collection yet", a count answered 0, or the engine was called on the closed shard."""
    import threading

    from sparsehybrid.connectors import qdrant_edge

    monkeypatch.setattr(qdrant_edge, "DISK_OPTIMIZE_EVERY", 30)
    records = make_records(120, chunks_per_doc=2)
    store = open_store(f"qdrant-edge://{tmp_path / 'disk'}?storage=disk")
    store.ensure_schema(SCHEMA)
    store.upsert(records[:10])
    failures: list[str] = []
    counts: list[int] = []
    writing = threading.Event()
    writing.set()

    def search() -> None:
        while writing.is_set():
            try:
                counts.append(store.count())
                if not store.search_sparse(records[0].sparse, 5):
                    failures.append("a search found nothing")
                store.search_fused(sparse=records[1].sparse, dense=records[1].dense, text=records[1].chunk.text)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=search) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for start in range(10, 120, 5):
            store.upsert(records[start : start + 5])  # a reload every sixth call
        writing.clear()
        for reader in readers:
            reader.join()
        assert store.count() == 120
    finally:
        writing.clear()
        store.close()
    assert not failures, failures[:3]
    assert counts and min(counts) >= 10


def test_the_step_of_a_disk_store_is_a_url_option(tmp_path):
    """``?step=N``: optimize every N written points, into segments sized for one step each
    (recorded in the shard's config, so the steps of a large collection never merge)."""
    from sparsehybrid.connectors.qdrant_edge import disk_segment_kb

    path = tmp_path / "s"
    store = open_store(f"qdrant-edge://{path}?step=25")
    try:
        assert isinstance(store, QdrantEdgeStore) and store.step == 25 and store.storage == "disk"
        store.ensure_schema(SCHEMA)
        for start in range(0, 50, 10):
            store.upsert(make_records(50)[start : start + 10])
        assert store._unoptimized == 20  # a step at 30 points, 20 waiting for the next
        assert store.count() == 50
    finally:
        store.close()
    config = json.loads((path / "shard" / "edge_config.json").read_text())
    assert config["optimizers"]["max_segment_size"] == disk_segment_kb(25)
    assert disk_segment_kb(30_000) == 50_000  # the default step's segments: 50 MB
    for bad in ("abc", "0"):
        with pytest.raises(ValueError, match="step must be a whole number of points"):
            open_store(f"qdrant-edge://{tmp_path / 'bad'}?step={bad}")
