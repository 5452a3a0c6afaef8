"""An index run hands freed memory back after every batch, so its heap does not grow with the corpus."""

from __future__ import annotations

import platform
import threading

import pytest

from sparsehybrid import heap
from sparsehybrid.connectors import open_store
from sparsehybrid.ingestion import indexing
from sparsehybrid.ingestion.encoding import BatchEncoder
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document
from tests.connectors.conformance import SCHEMA, make_records


def test_every_written_batch_releases_free_memory(tmp_path, tf_encoder, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(indexing, "release_free_memory", lambda: calls.append(1) or True)
    docs = [Document(id=f"d{i}", text=f"wing flow number {i} over a swept wing") for i in range(10)]
    with open_store(f"qdrant-edge://{tmp_path / 's'}") as store:
        stats = Indexer(store, tf_encoder, None, batch_size=3).index(docs)
    assert stats.batches == 4 and len(calls) == 4


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_on_glibc_the_arena_cap_and_trim_apply():
    assert heap.bound_malloc_arenas() is True
    heap.release_free_memory()  # returns whether anything was free to give back: either is fine


class _HeldEncoder:
    """The term-frequency encoder, except that it encodes only once told to: a batch in flight."""

    def __init__(self, inner, go: threading.Event):
        self.inner, self.go = inner, go
        self.name, self.vocab_size, self.max_length = inner.name, inner.vocab_size, inner.max_length
        self.started = threading.Event()

    def encode_document(self, texts):
        self.started.set()
        assert self.go.wait(30)
        return self.inner.encode_document(texts)


def test_a_store_build_step_waits_for_the_batch_being_encoded(tmp_path, tf_encoder):
    """Issue 21: a disk store's build step ran while the next batch was being encoded, and the
    two memory peaks added up (1.75 GB at 50,000 documents). The step now starts only once the
    batch in flight is encoded."""
    go = threading.Event()
    encoder = BatchEncoder(_HeldEncoder(tf_encoder, go), None, chunking=False)
    order: list[str] = []
    docs = [Document(id=f"d{i}", text=f"swept wing number {i}") for i in range(3)]
    with open_store(f"qdrant-edge://{tmp_path / 's'}?storage=disk") as store:
        store.ensure_schema(SCHEMA)
        store.upsert(make_records(20))
        encoding = threading.Thread(target=lambda: (encoder.encode_documents(docs), order.append("encoded")))
        step = threading.Thread(target=lambda: (store.optimize(), order.append("built")))
        encoding.start()
        try:
            assert encoder.sparse.started.wait(30)
            step.start()
            step.join(0.5)  # ample for an optimize of 20 points, had it not waited
            assert step.is_alive() and order == []
        finally:
            go.set()
            encoding.join(30)
            if step.ident is not None:
                step.join(30)
        assert order == ["encoded", "built"] and store.count() == 20


def test_a_batch_waits_while_a_store_builds():
    """The other half of the turn: no batch starts encoding while a build step holds its turn."""
    started = threading.Event()

    def encode() -> None:
        with heap.encoding_turn():
            started.set()

    with heap.build_step_turn():
        batch = threading.Thread(target=encode)
        batch.start()
        assert not started.wait(0.3)
    assert started.wait(30)
    batch.join(30)
