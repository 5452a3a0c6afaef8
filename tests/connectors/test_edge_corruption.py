"""Damaged embedded stores: one line naming the store, the damaged part and what to do; no hits
from a store that fails its own checks (issue 23)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore, StoreCorruptError, _edge
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document
from tests.conftest import cli_env


def built(path: Path) -> Path:
    store = QdrantEdgeStore(path)
    docs = [Document(id=str(i), text=f"document {i} about wing flutter {i}") for i in range(50)]
    Indexer(store, bm25=True, batch_size=100).index(docs)
    store.close()
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparsehybrid.cli", *args], capture_output=True, text=True, timeout=300, env=cli_env()
    )


def test_flipped_bytes_in_a_payload_page_are_one_line_naming_the_part(tmp_path):
    path = built(tmp_path / "idx")
    page = next((path / "shard" / "segments").iterdir()) / "payload_storage" / "page_0.dat"
    data = bytearray(page.read_bytes())
    for i in [i for i, b in enumerate(data) if b][100:3000:7]:
        data[i] ^= 0xFF
    page.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="payload storage") as err:
        QdrantEdgeStore(path)
    assert str(path) in str(err.value) and "sparsehybrid copy" in str(err.value)
    for command in (["info"], ["search", "wing", "--mode", "bm25"]):
        out = cli(*command, "--store", f"qdrant-edge://{path}")
        assert out.returncode == 1
        lines = (out.stdout + out.stderr).strip().splitlines()
        assert len(lines) == 1 and "is damaged" in lines[0] and "payload storage" in lines[0], lines
    with pytest.raises(StoreCorruptError):  # not StoreLockedError: the failed open let go of the store
        QdrantEdgeStore(path)


def test_a_corrupt_schema_file_is_named(tmp_path):
    path = built(tmp_path / "idx")
    (path / "sparsehybrid.json").write_text("{\n")
    with pytest.raises(StoreCorruptError, match=r"sparsehybrid\.json cannot be read") as err:
        QdrantEdgeStore(path)
    assert str(path / "sparsehybrid.json") in str(err.value) and "restore it from a backup" in str(err.value)


def test_a_point_without_its_document_is_refused_not_returned(tmp_path):
    path = built(tmp_path / "idx")
    store = QdrantEdgeStore(path)
    q = _edge()
    stray = q.Point("00000000-0000-0000-0000-000000000001", {"bm25": store._bm25.embed_document("wing wing")}, {})
    store.shard.update(q.UpdateOperation.upsert_points([stray]))
    with pytest.raises(StoreCorruptError, match="has no doc_id"):
        store.search_bm25("wing", 100)
    with pytest.raises(StoreCorruptError, match="has no doc_id"):
        store.document_states()
    store.close()


def test_the_service_is_not_healthy_once_the_store_fails_its_checks(tmp_path, tf_encoder):
    from fastapi.testclient import TestClient

    from sparsehybrid.search import HybridSearcher
    from sparsehybrid.service.app import create_app
    from sparsehybrid.service.core import SearchService
    from sparsehybrid.service.settings import ServiceSettings

    store = QdrantEdgeStore(tmp_path / "idx")
    docs = [Document(id=str(i), text=f"document {i} about wing flutter {i}") for i in range(20)]
    Indexer(store, tf_encoder, bm25=True).index(docs)
    service = SearchService(store, lambda s: HybridSearcher(s, tf_encoder))
    try:
        with TestClient(create_app(service, ServiceSettings())) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            q = _edge()
            stray = q.Point("00000000-0000-0000-0000-000000000001", {"bm25": store._bm25.embed_document("wing")}, {})
            store.shard.update(q.UpdateOperation.upsert_points([stray]))
            answer = client.post("/search", json={"query": "wing", "mode": "bm25", "top_k": 50})
            assert answer.status_code >= 400 and "has no doc_id" in answer.json()["detail"]
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "damaged"
    finally:
        service.close()


KILLED_WHILE_CREATING = """
import os, sys, types
import qdrant_edge
from sparsehybrid.connectors import qdrant_edge as store_module
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from tests.connectors.conformance import SCHEMA

class Killed:
    @staticmethod
    def create(path, config):
        os.makedirs(os.path.join(path, "segments"))  # the engine's first folder, then SIGKILL
        os._exit(9)

engine = types.SimpleNamespace(**{k: getattr(qdrant_edge, k) for k in dir(qdrant_edge) if not k.startswith("__")})
engine.EdgeShard = Killed
store_module._edge = lambda: engine
QdrantEdgeStore(sys.argv[1]).ensure_schema(SCHEMA)
"""


def test_a_store_whose_creation_was_killed_is_created_by_the_next_run(tmp_path):
    """A kill -9 while the engine was creating a new store's shard (seen in CI under load: the
    first kill of the crash-safety test landed there) left a ``shard/segments`` folder without the
    engine's config, and every later run failed with "the store is damaged" although it had never
    held a point. The next run now creates the store as if nothing had happened."""
    from tests.connectors.conformance import SCHEMA, make_records

    path = tmp_path / "idx"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_CREATING, str(path)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == 9, killed.stderr
    store = QdrantEdgeStore(path)
    try:
        assert store.schema is None
        store.ensure_schema(SCHEMA)
        store.upsert(make_records(10))
        assert store.count() == 10
    finally:
        store.close()
    with QdrantEdgeStore(path) as reopened:
        assert reopened.count() == 10
