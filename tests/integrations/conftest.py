"""What the framework adapters' tests share: a small BM25 index (no model to load), its searcher,
and the same searcher served over HTTP for the thin client."""

from __future__ import annotations

import os

import pytest

from sparsehybrid import Document, HybridSearcher, Indexer
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from tests.support import serving

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no usage events from the tests

TEXTS = {
    "a": "funded depreciation sets aside cash for replacing assets",
    "b": "straight line depreciation spreads an asset's cost evenly",
    "c": "a wing in a propeller slipstream gains lift",
    "d": "depreciation of currency against the dollar",
    "e": "boundary layer transition on a flat plate",
}


@pytest.fixture(scope="module")
def searcher(tmp_path_factory):
    store = QdrantEdgeStore(tmp_path_factory.mktemp("adapters") / "idx")
    docs = [Document(k, v, metadata={"topic": "money" if k in "abd" else "air"}) for k, v in TEXTS.items()]
    Indexer(store, bm25=True).index(docs)  # BM25 only: no model to load
    yield HybridSearcher(store)
    store.close()


@pytest.fixture(scope="module")
def service_url(searcher):
    """``searcher`` behind ``sparsehybrid serve``'s app on a free port."""
    from sparsehybrid.service.app import create_app
    from sparsehybrid.service.core import SearchService
    from sparsehybrid.service.settings import ServiceSettings

    service = SearchService(searcher.store, lambda _: searcher)
    try:
        with serving(create_app(service, ServiceSettings())) as url:
            yield url
    finally:
        service.batcher.close()  # the store is the searcher fixture's to close
