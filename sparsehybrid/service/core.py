"""The state a service shares between requests: one open store, one searcher with warm models.

Searches run one at a time under a lock: tokenizers refuse concurrent use from several threads
("Already borrowed"), and on a few CPU cores parallel encodes only contend. Writes from index
jobs do not take that lock (the engine orders reads and writes itself), only a write lock that
keeps two jobs' schema updates apart; so a search waits for no write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..connectors.base import StoreError, VectorStore
from ..fusion import FusionSetting
from ..search import HybridSearcher, SearchResults


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
    ):
        self.store = store
        self._make_searcher = make_searcher
        #: False when the service was started with its own fusion options: those stay the default.
        self.follow_recorded_fusion = follow_recorded_fusion
        self._searcher: HybridSearcher | None = None
        self.search_lock = threading.Lock()
        self.write_lock = threading.RLock()
        self.started = time.time()
        if store.schema is not None:
            self._searcher = make_searcher(store)

    @property
    def searcher(self) -> HybridSearcher:
        """The searcher, built on first need (the lock is held by the caller)."""
        if self._searcher is None:
            if self.store.schema is None:
                raise StoreError(f"{self.store.url} holds no collection yet: run `sparsehybrid index` first")
            self._searcher = self._make_searcher(self.store)
        return self._searcher

    @property
    def ready(self) -> bool:
        return self._searcher is not None

    def search(self, query: str, **options: Any) -> SearchResults:
        with self.search_lock:
            return self.searcher.search(query, **options)

    def search_batch(self, queries: list[str], **options: Any) -> list[SearchResults]:
        with self.search_lock:
            return self.searcher.search_batch(queries, **options)

    def record_fusion(self, setting: dict[str, Any] | None) -> dict[str, Any] | None:
        """Record the collection's fusion (``sparsehybrid tune`` through the service) and, unless
        started with its own fusion options, search with it from the next request on."""
        parsed = FusionSetting.from_dict(setting) if setting else FusionSetting()  # validate before writing
        with self.write_lock:
            schema = self.store.save_fusion(parsed.to_dict() if setting else None)
        if self.follow_recorded_fusion and self._searcher is not None:
            with self.search_lock:
                self._searcher.use_fusion(parsed)
        return schema.fusion

    def close(self) -> None:
        with self.write_lock, self.search_lock:
            self.store.close()
