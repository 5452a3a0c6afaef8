"""The Haystack retriever component as Haystack uses one: ``run`` returning ``documents``, inside
a ``Pipeline`` feeding a ``PromptBuilder``, ``run_async``, and the pipeline's ``to_dict`` /
``from_dict`` round trip, over an in-process searcher and over the service."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("haystack")

from haystack import Document as HaystackDocument
from haystack import Pipeline
from haystack.components.builders import PromptBuilder

from sparsehybrid import Document, HybridSearcher, Indexer
from sparsehybrid.client import AsyncSearchClient, SearchClient
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.integrations.haystack import SparseHybridRetriever
from tests.integrations.conftest import TEXTS


def test_run_returns_documents_with_score_and_meta(searcher):
    out = SparseHybridRetriever(searcher, top_k=2).run(query="funded depreciation cash")
    docs = out["documents"]
    assert len(docs) == 2 and all(isinstance(d, HaystackDocument) for d in docs)
    hit = searcher.search("funded depreciation cash", top_k=1)[0]
    assert docs[0].id == "a" and docs[0].content == TEXTS["a"] and docs[0].score == pytest.approx(hit.score)
    assert docs[0].meta["topic"] == "money" and docs[0].meta["explanation"].startswith("bm25#1")
    assert docs[0].meta["explanation_detail"]["retrievers"][0]["rank"] == 1


def test_run_options_override_the_component_defaults(searcher):
    retriever = SparseHybridRetriever(searcher, top_k=5, filter={"topic": "air"})
    assert {d.id for d in retriever.run(query="depreciation wing plate")["documents"]} == {"c", "e"}
    assert len(retriever.run(query="depreciation wing plate", top_k=1)["documents"]) == 1
    everything = retriever.run(query="depreciation", filter={"topic": "money"})["documents"]
    assert {d.id for d in everything} == {"a", "b", "d"}
    with pytest.raises(ValueError, match="unknown mode"):
        retriever.run(query="wing", mode="fuzzy")
    with pytest.raises(ValueError, match="unknown fusion"):  # checked when the pipeline is built
        SparseHybridRetriever(searcher, search_kwargs={"fusion": "borda"})


def test_in_a_pipeline_feeding_a_prompt(searcher):
    pipeline = Pipeline()
    pipeline.add_component("retriever", SparseHybridRetriever(searcher, top_k=2))
    pipeline.add_component(
        "prompt", PromptBuilder("{% for d in documents %}[{{ d.id }}] {{ d.content }}\n{% endfor %}Q: {{ query }}")
    )
    pipeline.connect("retriever.documents", "prompt.documents")
    query = "propeller slipstream lift"
    result = pipeline.run({"retriever": {"query": query}, "prompt": {"query": query}})
    assert result["prompt"]["prompt"].startswith(f"[c] {TEXTS['c']}\n")


def test_an_in_process_pipeline_saves_the_store_url_and_reopens_it(tmp_path):
    store = QdrantEdgeStore(tmp_path / "idx")
    Indexer(store, bm25=True).index([Document(k, v) for k, v in TEXTS.items()])
    searcher = HybridSearcher(store)
    expected = [h.doc_id for h in searcher.search("depreciation", top_k=3)]
    pipeline = Pipeline()
    pipeline.add_component("retriever", SparseHybridRetriever(searcher, top_k=3))
    saved = pipeline.dumps()
    store.close()  # an embedded store admits one opener: the loaded pipeline opens it again
    assert store.url in saved
    loaded = Pipeline.loads(saved, allowed_modules=["sparsehybrid.integrations.haystack"])
    retriever = loaded.get_component("retriever")
    try:
        assert [
            d.id for d in loaded.run({"retriever": {"query": "depreciation"}})["retriever"]["documents"]
        ] == expected
    finally:
        retriever.searcher.close()


def test_a_searcher_of_unknown_kind_refuses_to_serialise(searcher):
    class Wrapped:  # a Searcher of the user's own: it searches, but nothing says how to reopen it
        def search(self, query, options=None, /, **overrides):
            return searcher.search(query, options, **overrides)

    pipeline = Pipeline()
    pipeline.add_component("retriever", SparseHybridRetriever(Wrapped(), top_k=2))
    assert len(pipeline.run({"retriever": {"query": "depreciation wing"}})["retriever"]["documents"]) == 2
    with pytest.raises(TypeError, match="cannot be serialised"):
        pipeline.to_dict()


def test_over_the_service_serialises_and_runs_async(searcher, service_url, monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_API_KEY", "a-key-that-must-not-be-saved")
    expected = [h.doc_id for h in searcher.search("depreciation", top_k=3)]
    pipeline = Pipeline()
    pipeline.add_component(
        "retriever", SparseHybridRetriever(SearchClient(service_url), top_k=3, search_kwargs={"candidates": 50})
    )
    saved = pipeline.dumps()
    assert service_url in saved and "a-key-that-must-not-be-saved" not in saved
    monkeypatch.delenv("SPARSEHYBRID_API_KEY")
    loaded = Pipeline.loads(
        saved, allowed_modules=["sparsehybrid.integrations.haystack"]
    )  # Haystack trusts no module by default
    retriever = loaded.get_component("retriever")
    assert isinstance(retriever.searcher, SearchClient) and retriever.search_kwargs == {"candidates": 50}
    assert [d.id for d in loaded.run({"retriever": {"query": "depreciation"}})["retriever"]["documents"]] == expected
    out = asyncio.run(loaded.run_async({"retriever": {"query": "depreciation"}}))  # a sync client, in a thread
    assert [d.id for d in out["retriever"]["documents"]] == expected
    retriever.searcher.close()

    async def with_async_client():
        async with AsyncSearchClient(service_url) as client:
            component = SparseHybridRetriever(client, top_k=3)
            with pytest.raises(TypeError, match="run_async"):
                component.run(query="depreciation")
            again = SparseHybridRetriever.from_dict(component.to_dict())
            assert isinstance(again.searcher, AsyncSearchClient)
            await again.searcher.aclose()
            return [d.id for d in (await component.run_async(query="depreciation"))["documents"]]

    assert asyncio.run(with_async_client()) == expected
