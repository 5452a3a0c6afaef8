"""A stop request ends the indexing loop promptly wherever it waits: a batch still encoding is
not waited for, and a --sync deletion pass stops between its batches (issue 23). BM25-only
runs: no model to load."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, InvalidStateError

import pytest

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.encoding import BatchEncoder
from sparsehybrid.ingestion.indexing import Indexer, IndexInterrupted, result_unless_stopped, run_index
from tests.support import as_documents, cranfield_rows


def _after(seconds: float) -> threading.Event:
    """An event set ``seconds`` from now (a signal arriving while the loop waits)."""
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.daemon = True
    timer.start()
    return event


def test_a_stop_does_not_wait_for_a_batch_still_encoding(tmp_path, cranfield):
    docs = as_documents(cranfield_rows(cranfield, 8))
    encoder = BatchEncoder(None, None)
    slow: list[Future] = []

    def submit_encode(batch):
        """Encodes like the Prefect task would, but takes 30 s to deliver (a model still loading)."""
        future: Future = Future()

        def deliver() -> None:
            with contextlib.suppress(InvalidStateError):  # cancelled by the stopped run: dropped
                future.set_result(encoder.encode_documents(batch))

        timer = threading.Timer(30, deliver)
        timer.daemon = True
        timer.start()
        slow.append(future)
        return future

    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        stop = _after(0.3)
        t0 = time.monotonic()
        with pytest.raises(IndexInterrupted, match="run the same command again to resume"):
            run_index(store, docs, encoder.schema(True), submit_encode, batch_size=4, should_stop=stop.is_set)
        assert time.monotonic() - t0 < 5  # was 30 s: the loop waited for the encode before looking
        assert store.count() == 0
    finally:
        store.close()
        for future in slow:  # the timers' late results go nowhere
            future.cancel()


def test_a_stop_ends_a_sync_between_its_deletion_batches(tmp_path, cranfield):
    rows = cranfield_rows(cranfield, 40)
    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        Indexer(store, None, None, bm25=True, batch_size=40).index(as_documents(rows))
        deleted: list[list[str]] = []
        stop = threading.Event()

        def delete_documents(doc_ids: list[str]) -> int:
            store.delete_documents(doc_ids)
            deleted.append(doc_ids)
            stop.set()  # the signal arrives during the first deletion batch
            return len(doc_ids)

        with pytest.raises(IndexInterrupted, match="deleting 5 of 30 documents"):
            run_index(
                store,
                as_documents(rows[:10]),
                BatchEncoder(None, None).schema(True),
                lambda docs: pytest.fail("nothing is to be encoded"),
                delete_documents=delete_documents,
                batch_size=5,
                sync=True,
                allow_mass_delete=True,
                should_stop=stop.is_set,
            )
        assert len(deleted) == 1  # was 6: the deletion pass never looked at the stop request
        assert len(store.document_states()) == 35
    finally:
        store.close()


def test_result_unless_stopped_waits_for_a_result_when_no_stop_comes():
    future: Future = Future()
    threading.Timer(0.2, future.set_result, args=("encoded",)).start()
    assert result_unless_stopped(future, threading.Event().is_set, lambda: pytest.fail("not stopped")) == "encoded"


def test_result_unless_stopped_polls_a_prefect_style_future_through_its_wrapped_future():
    class Wrapped:
        """What PrefectConcurrentFuture exposes: the concurrent future it waits on."""

        def __init__(self) -> None:
            self.wrapped_future: Future = Future()

        def result(self):
            return self.wrapped_future.result()

    class Stopped(Exception):
        pass

    def interrupted():
        raise Stopped

    pending = Wrapped()
    t0 = time.monotonic()
    with pytest.raises(Stopped):
        result_unless_stopped(pending, _after(0.1).is_set, interrupted)
    assert time.monotonic() - t0 < 2
