"""A LangChain retriever over :class:`~sparsehybrid.search.HybridSearcher` (in-process) or
:class:`~sparsehybrid.client.SearchClient` / :class:`~sparsehybrid.client.AsyncSearchClient`
(a running service): the same hits, as LangChain ``Document`` objects.

    pip install sparsehybrid[langchain]
    retriever = SparseHybridRetriever(searcher=SearchClient("http://localhost:8080"), k=5)
    docs = retriever.invoke("what is funded depreciation")
"""

from __future__ import annotations

import inspect
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from ..search import AsyncSearcher, Searcher, SearchOptions
from ..types import Hit


def hit_to_document(hit: Hit) -> Document:
    """The hit's text as ``page_content``; its id, score, title, span and why in ``metadata``
    (the document's own metadata first, so the hit's keys win on a clash)."""
    return Document(
        id=hit.doc_id,
        page_content=hit.text,
        metadata={
            **hit.metadata,
            "doc_id": hit.doc_id,
            "score": hit.score,
            "title": hit.title,
            "chunk": hit.chunk,
            "span": list(hit.span) if hit.span else None,
            "explanation": hit.explanation.summary(),
        },
    )


class SparseHybridRetriever(BaseRetriever):
    """Retrieve with any :class:`~sparsehybrid.search.Searcher` (or async one) returning hits.

    ``k``, ``mode`` and ``filter`` are the common options; ``search_kwargs`` passes any other
    :meth:`HybridSearcher.search` option (``fusion``, ``weights``, ``rerank``...). Keyword
    arguments given to ``invoke`` override all of them for that call (``k=3``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher | AsyncSearcher
    k: int = 4
    mode: str = "hybrid"
    filter: dict[str, Any] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _options(self, kwargs: dict[str, Any]) -> SearchOptions:
        opts = {"mode": self.mode, "filter": self.filter, **self.search_kwargs, **kwargs}
        return SearchOptions.of(top_k=int(opts.pop("k", self.k)), **opts)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if inspect.iscoroutinefunction(self.searcher.search):
            raise TypeError("an AsyncSearchClient answers only ainvoke(); use SearchClient for invoke()")
        searcher = cast(Searcher, self.searcher)
        return [hit_to_document(h) for h in searcher.search(query, self._options(kwargs))]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if not inspect.iscoroutinefunction(self.searcher.search):
            return await run_in_executor(  # a sync searcher: in a thread, as LangChain does
                None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **kwargs
            )
        searcher = cast(AsyncSearcher, self.searcher)
        return [hit_to_document(h) for h in await searcher.search(query, self._options(kwargs))]
