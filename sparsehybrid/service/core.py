"""The state a service shares between requests: one open store, one searcher with warm models,
and the dynamic batcher whose worker threads answer searches concurrently.

Searches no longer wait for each other: several batches are in flight at once (one worker
encodes while another reads the store; both release the GIL), and each encoder is used by one
thread at a time (tokenizers refuse concurrent use from several threads: "Already borrowed"),
which also keeps parallel encodes from contending for the same cores. Writes from index jobs
take only a write lock that keeps two jobs' schema updates apart; a search waits for no write.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..connectors.base import StoreError, VectorStore
from ..fusion import FusionSetting
from ..search import HybridSearcher, SearchOptions, SearchResults, check_query
from .batching import BatchingSettings, DynamicBatcher


def default_workers() -> int:
    """Search threads: one more than the cores (a worker waiting on the store leaves its core
    to one that encodes), at least 2, at most 8."""
    return max(2, min(8, (os.cpu_count() or 1) + 1))


class SerializedEncoder:
    """An encoder that one thread at a time may call (its tokenizer is not thread-safe); any
    other attribute is the wrapped encoder's."""

    _LOCKED = frozenset({"encode_query", "encode_document", "explain_overlap"})

    def __init__(self, encoder: Any):
        self._encoder = encoder
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._encoder, name)
        if name not in self._LOCKED:
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


class SearchService:
    """The store and the searcher behind the HTTP API (usable without HTTP, e.g. in tests).

    ``make_searcher`` builds the searcher for the store (loading models); it is called at start
    when the store holds a collection, else at the first search after an index job created one.
    """

    def __init__(
        self,
        store: VectorStore,
        make_searcher: Callable[[VectorStore], HybridSearcher],
        *,
        follow_recorded_fusion: bool = True,
        batching: BatchingSettings | None = None,
    ):
        self.store = store
        self._make_searcher = make_searcher
        self._build_lock = threading.Lock()
        #: False when the service was started with its own fusion options: those stay the default.
        self.follow_recorded_fusion = follow_recorded_fusion
        self._searcher: HybridSearcher | None = None
        self.write_lock = threading.RLock()
        self.started = time.time()
        if store.schema is not None:
            self._searcher = self._build()
        self.batcher = DynamicBatcher(self._search_batch, batching or BatchingSettings(workers=default_workers()))

    def _build(self) -> HybridSearcher:
        searcher = self._make_searcher(self.store)
        searcher.sparse = SerializedEncoder(searcher.sparse) if searcher.sparse is not None else None
        searcher.dense = SerializedEncoder(searcher.dense) if searcher.dense is not None else None
        searcher.reranker = SerializedEncoder(searcher.reranker) if searcher.reranker is not None else None
        return searcher

    @property
    def searcher(self) -> HybridSearcher:
        """The searcher, built on first need (after an index job created the collection)."""
        if self._searcher is None:
            with self._build_lock:
                if self._searcher is None:
                    if self.store.schema is None:
                        raise StoreError(f"{self.store.url} holds no collection yet: run `sparsehybrid index` first")
                    self._searcher = self._build()
        return self._searcher

    @property
    def ready(self) -> bool:
        return self._searcher is not None

    def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults:
        """One search, batched with whatever else arrives at the same moment."""
        return self.search_batch([query], options, **overrides)[0]

    def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]:
        """Several queries with the same options (merged with concurrent searches)."""
        opts = SearchOptions.of(options, **overrides)
        texts = [check_query(q) for q in queries]  # a bad query fails its own request only
        return self.batcher.search(texts, opts) if texts else []

    async def search_async(self, queries: Sequence[str], options: SearchOptions) -> list[SearchResults]:
        """:meth:`search_batch` for an event loop: the caller waits without holding a thread."""
        texts = [check_query(q) for q in queries]  # a bad query fails its own request only
        return await self.batcher.search_async(texts, options) if texts else []

    def _search_batch(self, queries: list[str], options: SearchOptions) -> list[SearchResults]:
        return self.searcher.search_batch(queries, options)

    def record_fusion(self, setting: dict[str, Any] | None) -> dict[str, Any] | None:
        """Record the collection's fusion (``sparsehybrid tune`` through the service) and, unless
        started with its own fusion options, search with it from the next request on."""
        parsed = FusionSetting.from_dict(setting) if setting else FusionSetting()  # validate before writing
        with self.write_lock:
            schema = self.store.save_fusion(parsed.to_dict() if setting else None)
        if self.follow_recorded_fusion and self._searcher is not None:
            self._searcher.use_fusion(parsed)
        return schema.fusion

    def close(self) -> None:
        """Answer what is queued, then close the store."""
        self.batcher.close()
        with self.write_lock:
            self.store.close()
