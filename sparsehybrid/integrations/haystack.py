"""A Haystack retriever component over :class:`~sparsehybrid.search.HybridSearcher` (in-process)
or :class:`~sparsehybrid.client.SearchClient` / :class:`~sparsehybrid.client.AsyncSearchClient`
(a running service): the same hits, as Haystack ``Document`` objects with ``score`` and ``meta``.

    pip install sparsehybrid[haystack]
    pipeline.add_component("retriever", SparseHybridRetriever(SearchClient("http://localhost:8080")))
    pipeline.run({"retriever": {"query": "what is funded depreciation"}})

Only a retriever: a Haystack document store is written with embeddings from Haystack's own
embedders, while a sparsehybrid index encodes documents itself (``sparsehybrid index``).
A pipeline that holds it serialises (``to_dict``) with the service's or the store's URL (never
an API key or a password: the client and the store read them from the environment again), and
loads with :func:`~sparsehybrid.searchers.open_searcher` on that URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from haystack import Document, component, default_from_dict, default_to_dict

from ..client import AsyncSearchClient, SearchClient
from ..search import AsyncSearcher, HybridSearcher, Searcher, SearchOptions
from ..types import Hit
from .common import hit_metadata, is_async


def hit_to_document(hit: Hit) -> Document:
    """The hit's text as ``content``, its final score as ``score``, its id, title, span and
    explanation in ``meta`` (as :func:`~sparsehybrid.integrations.common.hit_metadata`)."""
    return Document(id=hit.doc_id, content=hit.text, meta=hit_metadata(hit), score=hit.score)


@component
class SparseHybridRetriever:
    """Retrieve with any :class:`~sparsehybrid.search.Searcher` (``HybridSearcher``,
    ``SearchClient``, what ``open_searcher`` returns) or :class:`~sparsehybrid.search.AsyncSearcher`.

    ``top_k``, ``mode`` and ``filter`` (sparsehybrid's metadata filter, e.g. ``{"lang": "en"}``,
    not Haystack's filter syntax) can be set here and per run; ``search_kwargs`` passes any other
    :class:`~sparsehybrid.search.SearchOptions` field (``fusion``, ``weights``, ``rerank``...).
    An ``AsyncSearchClient`` answers only ``run_async``.
    """

    def __init__(
        self,
        searcher: Searcher | AsyncSearcher,
        *,
        top_k: int = 10,
        mode: str = "hybrid",
        filter: Mapping[str, Any] | None = None,
        search_kwargs: Mapping[str, Any] | None = None,
    ):
        self.searcher = searcher
        self.top_k, self.mode = top_k, mode
        self.filter = dict(filter) if filter is not None else None
        self.search_kwargs = dict(search_kwargs or {})
        # Checked once, here: a bad option fails when the pipeline is built, not at its first run.
        self.options = SearchOptions.of(top_k=top_k, mode=mode, filter=self.filter, **self.search_kwargs)

    def _options(self, top_k: int | None, mode: str | None, filter: Mapping[str, Any] | None) -> SearchOptions:
        given = {"top_k": top_k, "mode": mode, "filter": dict(filter) if filter is not None else None}
        return SearchOptions.of(self.options, **{k: v for k, v in given.items() if v is not None})

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
            raise TypeError("an AsyncSearchClient answers only run_async(); use SearchClient for run()")
        hits = cast(Searcher, self.searcher).search(query, self._options(top_k, mode, filter))
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
            return await asyncio.to_thread(self.run, query, top_k, mode, filter)
        hits = await cast(AsyncSearcher, self.searcher).search(query, self._options(top_k, mode, filter))
        return {"documents": [hit_to_document(h) for h in hits]}

    def to_dict(self) -> dict[str, Any]:
        """Haystack's serialised form: where to search (a service's or a store's URL, without
        credentials) and the options."""
        if isinstance(self.searcher, (SearchClient, AsyncSearchClient)):
            target = self.searcher.url
        elif isinstance(self.searcher, HybridSearcher):
            target = self.searcher.store.url  # reopened with the encoders its collection records
        else:
            raise TypeError(
                f"SparseHybridRetriever over a {type(self.searcher).__name__} cannot be serialised: "
                "use a SearchClient, an AsyncSearchClient or a HybridSearcher"
            )
        return default_to_dict(
            self,
            target=target,
            asynchronous=is_async(self.searcher),
            top_k=self.top_k,
            mode=self.mode,
            filter=self.filter,
            search_kwargs=self.search_kwargs,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseHybridRetriever:
        """The component again, searching what ``to_dict`` named (``open_searcher(target)``)."""
        from ..searchers import open_searcher

        params = dict(data.get("init_parameters", {}))
        target, asynchronous = params.pop("target"), params.pop("asynchronous", False)
        searcher = AsyncSearchClient(target) if asynchronous else open_searcher(target)
        return default_from_dict(cls, {**data, "init_parameters": {"searcher": searcher, **params}})
