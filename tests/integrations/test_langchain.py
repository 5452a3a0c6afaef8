"""The LangChain retriever, with the checks of LangChain's standard retriever tests (``k`` in the
constructor and per call, Documents from invoke and ainvoke), over a searcher and over the service
(both from this folder's conftest)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document as LCDocument

from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.integrations.langchain import SparseHybridRetriever
from tests.integrations.conftest import TEXTS


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


def test_over_the_service_the_documents_are_the_same(searcher, service_url):
    local = SparseHybridRetriever(searcher=searcher, k=3).invoke("depreciation of assets")
    with SearchClient(service_url) as client:
        assert SparseHybridRetriever(searcher=client, k=3).invoke("depreciation of assets") == local

    async def via_async() -> list[LCDocument]:
        async with AsyncSearchClient(service_url) as client:
            return await SparseHybridRetriever(searcher=client, k=3).ainvoke("depreciation of assets")

    assert asyncio.run(via_async()) == local
    with pytest.raises(TypeError, match="ainvoke"):
        SparseHybridRetriever(searcher=AsyncSearchClient(service_url)).invoke("wing")
