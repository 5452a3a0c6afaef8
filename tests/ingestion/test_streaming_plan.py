"""An index run's plan keeps ids and hashes, not texts: memory stays flat in corpus size (issue 21).

The documents wait in an on-disk spool until their batch is encoded; these tests check that no
document the source produced is still alive after planning, and that what comes back from the
spool is exactly what was planned (last copy of an id wins, the source's order kept).
"""

from __future__ import annotations

import gc
import weakref

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import IndexStats, plan_index
from sparsehybrid.ingestion.spool import DocumentSpool
from sparsehybrid.types import Document


def test_planning_holds_no_document_in_memory(tmp_path):
    alive: list[weakref.ref] = []

    def source():
        for i in range(300):
            doc = Document(id=f"d{i}", text=f"passage number {i} " * 20)
            alive.append(weakref.ref(doc))
            yield doc

    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        with plan_index(store, source(), IndexStats()) as plan:
            gc.collect()
            held = sum(ref() is not None for ref in alive)
            assert held == 0, f"the plan keeps {held} of 300 documents in memory"
            assert len(plan.todo) == 300
            first = plan.load(plan.todo[:2])
            assert [d.id for d, _ in first] == ["d0", "d1"]
            assert first[1][0].text == "passage number 1 " * 20
    finally:
        store.close()


def test_the_spool_gives_back_the_last_copy_in_source_order(tmp_path):
    docs = [
        Document(id="a", text="first a"),
        Document(id="b", text="only b"),
        Document(id="a", text="second a"),
        Document(id="c", text="only c"),
    ]
    store = QdrantEdgeStore(tmp_path / "idx")
    stats = IndexStats()
    try:
        with plan_index(store, iter(docs), stats) as plan:
            planned = [d for d, _ in plan.load(plan.todo)]
    finally:
        store.close()
    assert [(d.id, d.text) for d in planned] == [("b", "only b"), ("a", "second a"), ("c", "only c")]
    assert (stats.seen, stats.duplicates, stats.conflicting_ids) == (3, 1, ["a"])


def test_a_closed_spool_leaves_no_file_behind(tmp_path):
    spool = DocumentSpool(directory=str(tmp_path))
    spool.add(Document(id="x", text="y"))
    assert spool.load([0])[0].text == "y"
    spool.close()
    assert list(tmp_path.iterdir()) == []  # an unnamed temporary file: nothing to clean up after a kill either


def test_a_stop_request_ends_the_read_of_a_long_source(tmp_path):
    """Ctrl-C while a large source is being read and spooled ends the run there, not after it."""
    import pytest

    from sparsehybrid.ingestion.indexing import IndexInterrupted, run_index

    read = 0
    stop = False

    def source():
        nonlocal read, stop
        for i in range(100_000):
            read += 1
            stop = stop or i == 1500  # the signal arrives while the source is read
            yield Document(id=f"d{i}", text=f"passage {i}")

    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        with pytest.raises(IndexInterrupted, match="while reading the source, nothing written"):
            run_index(store, source(), None, lambda docs: None, should_stop=lambda: stop)  # type: ignore[arg-type]
        assert read < 5000 and store.schema is None
    finally:
        store.close()
