"""A LlamaIndex retriever over :class:`~sparsehybrid.search.HybridSearcher` (in-process) or
:class:`~sparsehybrid.client.SearchClient` / :class:`~sparsehybrid.client.AsyncSearchClient`
(a running service): the same hits, as ``NodeWithScore`` of ``TextNode``.

    pip install sparsehybrid[llamaindex]
    retriever = SparseHybridRetriever(SearchClient("http://localhost:8080"), top_k=5)
    nodes = retriever.retrieve("what is funded depreciation")
    engine = RetrieverQueryEngine.from_args(retriever, llm=...)

Only a retriever: LlamaIndex's vector stores are handed embeddings made by LlamaIndex's own
embedding model, while a sparsehybrid index encodes queries itself (sparse, dense and BM25).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ..search import AsyncSearcher, Searcher, SearchOptions
from ..types import Hit
from .common import hit_metadata, is_async

#: Kept out of the text an LLM or an embedding model sees (they describe the ranking, not the document).
RANKING_KEYS = ["doc_id", "score", "chunk", "span", "explanation", "explanation_detail"]


def hit_to_node(hit: Hit) -> NodeWithScore:
    """The hit as a ``TextNode`` (id = document id) with its final score; the metadata as
    :func:`~sparsehybrid.integrations.common.hit_metadata`, ranking keys hidden from prompts."""
    node = TextNode(
        id_=hit.doc_id,
        text=hit.text,
        metadata=hit_metadata(hit),
        excluded_llm_metadata_keys=list(RANKING_KEYS),
        excluded_embed_metadata_keys=list(RANKING_KEYS),
    )
    return NodeWithScore(node=node, score=hit.score)


class SparseHybridRetriever(BaseRetriever):
    """Retrieve with any :class:`~sparsehybrid.search.Searcher` (``HybridSearcher``,
    ``SearchClient``, what ``open_searcher`` returns) or :class:`~sparsehybrid.search.AsyncSearcher`.

    ``top_k``, ``mode`` and ``filter`` are the common options; ``search_kwargs`` passes any other
    :class:`~sparsehybrid.search.SearchOptions` field (``fusion``, ``weights``, ``rerank``...).
    They are checked here, once. An ``AsyncSearchClient`` answers only ``aretrieve``.
    """

    def __init__(
        self,
        searcher: Searcher | AsyncSearcher,
        *,
        top_k: int = 4,
        mode: str = "hybrid",
        filter: Mapping[str, Any] | None = None,
        search_kwargs: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ):
        self.searcher = searcher
        filter = dict(filter) if filter is not None else None
        self.options = SearchOptions.of(**{"top_k": top_k, "mode": mode, "filter": filter, **(search_kwargs or {})})
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if is_async(self.searcher):
            raise TypeError("an AsyncSearchClient answers only aretrieve(); use SearchClient for retrieve()")
        searcher = cast(Searcher, self.searcher)
        return [hit_to_node(h) for h in searcher.search(query_bundle.query_str, self.options)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if not is_async(self.searcher):  # a sync searcher: in a thread, so the event loop keeps running
            return await asyncio.to_thread(self._retrieve, query_bundle)
        searcher = cast(AsyncSearcher, self.searcher)
        return [hit_to_node(h) for h in await searcher.search(query_bundle.query_str, self.options)]
