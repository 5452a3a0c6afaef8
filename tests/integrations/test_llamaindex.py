"""The LlamaIndex retriever as LlamaIndex uses one: ``retrieve``/``aretrieve`` giving
``NodeWithScore``, and inside a ``RetrieverQueryEngine`` (with LlamaIndex's offline MockLLM),
over an in-process searcher and over the service."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.integrations.llamaindex import SparseHybridRetriever
from tests.integrations.conftest import TEXTS


def test_nodes_carry_the_hit_with_its_score_and_explanation(searcher):
    nodes = SparseHybridRetriever(searcher, top_k=2).retrieve("funded depreciation cash")
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    best = nodes[0]
    hit = searcher.search("funded depreciation cash", top_k=1)[0]
    assert best.node.node_id == "a" and best.node.get_content() == TEXTS["a"] and best.score == pytest.approx(hit.score)
    meta = best.node.metadata
    assert meta["topic"] == "money" and meta["doc_id"] == "a" and meta["explanation"].startswith("bm25#1")
    assert meta["explanation_detail"]["retrievers"][0] == {
        "retriever": "bm25",
        "rank": 1,
        "score": pytest.approx(hit.explanation.retrievers[0].score),
    }
    # The ranking evidence is kept out of what an LLM reads; the document's own metadata is not.
    llm_text = best.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "topic: money" in llm_text and "explanation" not in llm_text


def test_options_and_filter_pass_through(searcher):
    retriever = SparseHybridRetriever(searcher, top_k=5, filter={"topic": "air"}, search_kwargs={"candidates": 20})
    assert {n.node.node_id for n in retriever.retrieve("depreciation wing plate")} == {"c", "e"}
    with pytest.raises(ValueError, match="unknown mode"):  # checked when the retriever is built
        SparseHybridRetriever(searcher, mode="fuzzy")
    with pytest.raises(ValueError, match="top_k"):
        SparseHybridRetriever(searcher, top_k=0)


def test_in_a_query_engine_the_sources_are_our_hits(searcher):
    engine = RetrieverQueryEngine.from_args(SparseHybridRetriever(searcher, top_k=3), llm=MockLLM())
    response = engine.query("straight line depreciation")
    assert response.source_nodes[0].node.node_id == "b"
    assert [n.node.node_id for n in response.source_nodes] == [
        h.doc_id for h in searcher.search("straight line depreciation", top_k=3)
    ]


def test_over_the_service_sync_and_async(searcher, service_url):
    expected = [h.doc_id for h in searcher.search("depreciation", top_k=3)]
    with SearchClient(service_url) as client:
        retriever = SparseHybridRetriever(client, top_k=3)
        assert [n.node.node_id for n in retriever.retrieve("depreciation")] == expected
        assert [n.node.node_id for n in asyncio.run(retriever.aretrieve("depreciation"))] == expected  # in a thread

    async def run_async():
        async with AsyncSearchClient(service_url) as client:
            retriever = SparseHybridRetriever(client, top_k=3)
            with pytest.raises(TypeError, match="aretrieve"):
                retriever.retrieve(QueryBundle("depreciation"))
            return [n.node.node_id for n in await retriever.aretrieve("depreciation")]

    assert asyncio.run(run_async()) == expected
