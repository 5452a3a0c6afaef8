"""The conformance suite on the Qdrant server connector: qdrant-client local mode here, a real
server when ``QDRANT_URL`` is set (e.g. ``qdrant://localhost:6333``, key from ``QDRANT_API_KEY``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from sparsehybrid.connectors import StoreUnavailableError, open_store
from sparsehybrid.connectors.qdrant_server import QdrantServerStore, rrf_query

from .conformance import StoreConformance


class TestQdrantLocalModeConformance(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path):
        # Local mode commits each point to SQLite separately; on tmpfs that costs ~1 ms instead
        # of ~17 ms per point, which keeps the 2,500-point paging test fast.
        shm = Path("/dev/shm")
        base = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
        store = open_store(f"qdrant-local://{base / 'qdrant'}?collection=conformance")
        assert isinstance(store, QdrantServerStore)
        yield store
        store.close()
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(not os.environ.get("QDRANT_URL"), reason="QDRANT_URL not set: no Qdrant server to test against")
class TestQdrantServerConformance(StoreConformance):
    @pytest.fixture
    def store(self):
        name = f"sparsehybrid-test-{uuid.uuid4().hex[:12]}"
        store = open_store(os.environ["QDRANT_URL"], collection=name)
        yield store
        try:
            if store._client is not None:
                store._client.delete_collection(name)
        finally:
            store.close()


def test_url_round_trips_and_batches(tmp_path):
    store = open_store(f"qdrant-local://{tmp_path / 'q'}", batch_size=17)
    try:
        assert store.url == f"qdrant-local://{tmp_path / 'q'}"
        assert store.batch_size == 17 and store.collection == "sparsehybrid"
    finally:
        store.close()
    with pytest.raises(ValueError, match="unknown option"):
        open_store(f"qdrant-local://{tmp_path / 'q'}?colection=x")


def test_second_client_on_same_path_is_refused(tmp_path):
    from sparsehybrid.connectors import StoreLockedError

    first = open_store(f"qdrant-local://{tmp_path / 'q'}")
    try:
        with pytest.raises(StoreLockedError):
            open_store(f"qdrant-local://{tmp_path / 'q'}")
    finally:
        first.close()


def test_rrf_k_matches_client_side_convention():
    q = rrf_query(60, [1.0, 1.0])
    assert q.rrf.k == 61 and q.rrf.weights is None
    assert rrf_query(10, [2.0, 1.0]).rrf.weights == [2.0, 1.0]


def test_server_down_raises_one_clear_error_without_secrets(monkeypatch):
    """Port 1 refuses connections: a real refused connection, retried, then one clean error."""
    secret = "planted-" + uuid.uuid4().hex
    monkeypatch.setenv("QDRANT_API_KEY", secret)
    with pytest.raises(StoreUnavailableError) as info:
        open_store("qdrant://127.0.0.1:1/coll?retries=2&timeout=2")
    err = info.value
    assert "qdrant://127.0.0.1:1/coll" in str(err) and "2 attempt" in str(err)
    assert secret not in str(err) and secret not in repr(err)
    assert err.__cause__ is None and err.__suppress_context__
