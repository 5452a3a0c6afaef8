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


def test_an_unknown_storage_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="storage must be one of ram, disk"):
        open_store(f"qdrant-edge://{tmp_path / 'x'}?storage=tape")
