"""A Haystack retriever component over :class:`~sparsehybrid.search.HybridSearcher` (in-process)
or :class:`~sparsehybrid.client.SearchClient` / :class:`~sparsehybrid.client.AsyncSearchClient`
(a running service): the same hits, as Haystack ``Document`` objects with ``score`` and ``meta``.

    pip install sparsehybrid[haystack]
    pipeline.add_component("retriever", SparseHybridRetriever(SearchClient("http://localhost:8080")))
    pipeline.run({"retriever": {"query": "what is funded depreciation"}})

Only a retriever: a Haystack document store is written with embeddings from Haystack's own
embedders, while a sparsehybrid index encodes documents itself (``sparsehybrid index``).
A pipeline that holds it serialises (``to_dict``) when it searches a service: the URL is kept,
the API key is not (the client reads ``$SPARSEHYBRID_API_KEY`` again when loaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict

from ..client import AsyncSearchClient, SearchClient
from ..types import Hit
from .common import hit_metadata, is_async, search_options


def hit_to_document(hit: Hit) -> Document:
    """The hit's text as ``content``, its final score as ``score``, its id, title, span and
    explanation in ``meta`` (as :func:`~sparsehybrid.integrations.common.hit_metadata`)."""
    return Document(id=hit.doc_id, content=hit.text, meta=hit_metadata(hit), score=hit.score)


@component
class SparseHybridRetriever:
    """Retrieve with anything that has ``search(query, top_k=..., **options)`` returning hits.

    ``top_k``, ``mode`` and ``filter`` (sparsehybrid's metadata filter, e.g. ``{"lang": "en"}``)
    can be set here and per run; ``search_kwargs`` passes any other :meth:`HybridSearcher.search`
    option (``fusion``, ``weights``, ``rerank``...). An ``AsyncSearchClient`` answers only
    ``run_async`` (``AsyncPipeline``).
    """

    def __init__(
        self,
        searcher: Any,
        *,
        top_k: int = 10,
        mode: str = "hybrid",
        filter: Mapping[str, Any] | None = None,
        search_kwargs: Mapping[str, Any] | None = None,
    ):
        self.searcher = searcher
        self.top_k, self.mode = top_k, mode
        self.filter = dict(filter) if filter else None
        self.search_kwargs = dict(search_kwargs or {})

    def _options(self, top_k: int | None, mode: str | None, filter: Mapping[str, Any] | None) -> dict[str, Any]:
        defaults = {**self.search_kwargs, "top_k": self.top_k, "mode": self.mode, "filter": self.filter}
        return search_options(defaults, {"top_k": top_k, "mode": mode, "filter": filter})

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        top_k: int | None = None,
        mode: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, list[Document]]:
        """The best ``top_k`` documents for ``query``, best first."""
        if is_async(self.searcher):
            raise TypeError("an AsyncSearchClient answers only run_async() (AsyncPipeline); use SearchClient for run()")
        hits = self.searcher.search(query, **self._options(top_k, mode, filter))
        return {"documents": [hit_to_document(h) for h in hits]}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        top_k: int | None = None,
        mode: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, list[Document]]:
        """:meth:`run`, awaited; a synchronous searcher runs in a worker thread."""
        if not is_async(self.searcher):
            import asyncio

            return await asyncio.to_thread(self.run, query, top_k, mode, filter)
        hits = await self.searcher.search(query, **self._options(top_k, mode, filter))
        return {"documents": [hit_to_document(h) for h in hits]}

    def to_dict(self) -> dict[str, Any]:
        """Haystack's serialised form: the service's URL and the options (never the API key)."""
        if not isinstance(self.searcher, (SearchClient, AsyncSearchClient)):
            raise TypeError(
                f"a pipeline with SparseHybridRetriever over {type(self.searcher).__name__} cannot be serialised: "
                "search a service (SearchClient(url)) to save the pipeline"
            )
        return default_to_dict(
            self,
            url=self.searcher.url,
            asynchronous=isinstance(self.searcher, AsyncSearchClient),
            top_k=self.top_k,
            mode=self.mode,
            filter=self.filter,
            search_kwargs=self.search_kwargs,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseHybridRetriever:
        params = dict(data.get("init_parameters", {}))
        client = AsyncSearchClient if params.pop("asynchronous", False) else SearchClient
        url = params.pop("url")
        return default_from_dict(cls, {**data, "init_parameters": {"searcher": client(url), **params}})
