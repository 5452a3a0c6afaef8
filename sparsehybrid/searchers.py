"""``open_searcher``: the right :class:`~sparsehybrid.search.Searcher` for any target, so no
caller asks whether a store is embedded, served by a running service, or a server backend.

It sits above both the in-process searcher and the HTTP client (it chooses between them).
"""

from __future__ import annotations

from typing import Any

from .client import SearchClient
from .connectors.base import VectorStore
from .connectors.registry import open_store
from .search import Searcher, searcher_for_store


def open_searcher(
    target: str | VectorStore,
    *,
    use_sparse: bool = True,
    use_dense: bool = True,
    reranker: str | None = None,
    device: str | None = None,
    api_key: str | None = None,
    **kwargs: Any,
) -> Searcher:
    """A searcher for ``target``: a service URL (``http(s)://``: a :class:`SearchClient`), a
    store URL, or an open store. A store that a running service owns (an embedded store while
    ``sparsehybrid serve`` has it open) is searched through that service with its warm models;
    any other is searched in-process with the encoders its collection records (``use_sparse`` /
    ``use_dense`` load only what is needed, ``reranker`` a cross-encoder, ``kwargs`` go to
    :class:`HybridSearcher`). Close the searcher when done: one opened from a URL closes its store.
    """
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        return SearchClient(target, api_key=api_key)
    store = open_store(target) if isinstance(target, str) else target
    owns = isinstance(target, str)
    try:
        if store.served_by is not None:
            if owns:
                store.close()
            return SearchClient(store.served_by, api_key=api_key)
        searcher = searcher_for_store(
            store, use_sparse=use_sparse, use_dense=use_dense, reranker=reranker, device=device, **kwargs
        )
    except BaseException:
        if owns:
            store.close()
        raise
    searcher.owns_store = owns
    return searcher
