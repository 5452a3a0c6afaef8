"""The one searcher interface: in-process (:class:`~.searcher.HybridSearcher`) and over HTTP
(:class:`~sparsehybrid.client.SearchClient`) alike, so callers never ask which they hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .options import SearchOptions
from .results import SearchResults


@runtime_checkable
class Searcher(Protocol):
    """Searches by :class:`SearchOptions`: ``search(q, options, **overrides)``, where overrides
    are option names (``top_k=5, mode="sparse"``). ``search(q)`` is ``search_batch([q])[0]``."""

    def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults: ...

    def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncSearcher(Protocol):
    """:class:`Searcher` for asyncio (:class:`~sparsehybrid.client.AsyncSearchClient`)."""

    async def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults: ...

    async def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]: ...

    async def aclose(self) -> None: ...
