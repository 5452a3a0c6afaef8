"""The LangChain retriever, with the checks of LangChain's standard retriever tests (``k`` in the
constructor and per call, Documents from invoke and ainvoke), over a searcher and over the service."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytest.importorskip("langchain_core")

import uvicorn
from langchain_core.documents import Document as LCDocument

from sparsehybrid import Document, HybridSearcher, Indexer
from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.integrations.langchain import SparseHybridRetriever
from sparsehybrid.service.app import create_app
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings

TEXTS = {
    "a": "funded depreciation sets aside cash for replacing assets",
    "b": "straight line depreciation spreads an asset's cost evenly",
    "c": "a wing in a propeller slipstream gains lift",
    "d": "depreciation of currency against the dollar",
    "e": "boundary layer transition on a flat plate",
}


@pytest.fixture(scope="module")
def searcher(tmp_path_factory):
    store = QdrantEdgeStore(tmp_path_factory.mktemp("lc") / "idx")
    docs = [Document(k, v, metadata={"topic": "money" if k in "abd" else "air"}) for k, v in TEXTS.items()]
    Indexer(store, bm25=True).index(docs)  # BM25 only: no model to load
    yield HybridSearcher(store)
    store.close()


@pytest.fixture(scope="module")
def url(searcher):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(SearchService(searcher.store, lambda _: searcher), ServiceSettings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_k_in_the_constructor_and_per_call(searcher):
    retriever = SparseHybridRetriever(searcher=searcher, k=2)
    docs = retriever.invoke("depreciation")
    assert len(docs) == 2 and all(isinstance(d, LCDocument) and d.page_content for d in docs)
    assert len(retriever.invoke("depreciation", k=1)) == 1
    assert len(SparseHybridRetriever(searcher=searcher, k=3).invoke("depreciation")) == 3


def test_documents_carry_the_hit(searcher):
    [doc] = SparseHybridRetriever(searcher=searcher, k=1).invoke("funded depreciation cash")
    assert doc.id == "a" and doc.page_content == TEXTS["a"]
    assert doc.metadata["doc_id"] == "a" and doc.metadata["topic"] == "money" and doc.metadata["score"] > 0
    assert doc.metadata["explanation"].startswith("bm25#1")


def test_filter_and_options_pass_through(searcher):
    retriever = SparseHybridRetriever(searcher=searcher, k=5, filter={"topic": "air"})
    assert {d.id for d in retriever.invoke("depreciation wing plate")} == {"c", "e"}
    with pytest.raises(ValueError, match="unknown mode"):
        retriever.invoke("wing", mode="fuzzy")


def test_ainvoke_matches_invoke(searcher):
    retriever = SparseHybridRetriever(searcher=searcher, k=3)
    assert asyncio.run(retriever.ainvoke("depreciation", k=2)) == retriever.invoke("depreciation", k=2)


def test_over_the_service_the_documents_are_the_same(searcher, url):
    local = SparseHybridRetriever(searcher=searcher, k=3).invoke("depreciation of assets")
    with SearchClient(url) as client:
        assert SparseHybridRetriever(searcher=client, k=3).invoke("depreciation of assets") == local

    async def via_async() -> list[LCDocument]:
        async with AsyncSearchClient(url) as client:
            return await SparseHybridRetriever(searcher=client, k=3).ainvoke("depreciation of assets")

    assert asyncio.run(via_async()) == local
    with pytest.raises(TypeError, match="ainvoke"):
        SparseHybridRetriever(searcher=AsyncSearchClient(url)).invoke("wing")
