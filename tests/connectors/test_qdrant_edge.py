"""The conformance suite on the embedded Qdrant Edge store."""

from __future__ import annotations

import pytest

from sparsehybrid.connectors import open_store

from .conformance import StoreConformance


class TestQdrantEdgeConformance(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path):
        store = open_store(f"qdrant-edge://{tmp_path / 'index'}")
        yield store
        store.close()
