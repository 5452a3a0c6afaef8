"""An index run hands freed memory back after every batch, so its heap does not grow with the corpus."""

from __future__ import annotations

import platform

import pytest

from sparsehybrid import heap
from sparsehybrid.connectors import open_store
from sparsehybrid.ingestion import indexing
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document


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
