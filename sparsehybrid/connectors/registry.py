"""``open_store(url)``: map URL schemes to backends, so new backends plug in by registering.

Backends are imported lazily: using Qdrant Edge never imports the Elasticsearch client.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import service_file
from .base import StoreLockedError, VectorStore
from .sink import IndexSink

StoreFactory = Callable[..., VectorStore]

#: scheme -> "module:function" taking (url, **options) and returning a VectorStore.
_REGISTRY: dict[str, str | StoreFactory] = {
    "qdrant-edge": "sparsehybrid.connectors.registry:_open_qdrant_edge",
    "qdrant": "sparsehybrid.connectors.qdrant_server:open_qdrant",
    "qdrants": "sparsehybrid.connectors.qdrant_server:open_qdrant",
    "qdrant-local": "sparsehybrid.connectors.qdrant_server:open_qdrant",
    "opensearch": "sparsehybrid.connectors.opensearch:open_opensearch",
    "opensearchs": "sparsehybrid.connectors.opensearch:open_opensearch",
    "elasticsearch": "sparsehybrid.connectors.elasticsearch:open_elasticsearch",
    "elasticsearchs": "sparsehybrid.connectors.elasticsearch:open_elasticsearch",
}


def register_store(scheme: str, factory: str | StoreFactory) -> None:
    """Make ``open_store`` understand ``scheme://...`` (factory or "module:attr" path)."""
    _REGISTRY[scheme.lower()] = factory


def registered_schemes() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(factory: str | StoreFactory) -> StoreFactory:
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_store(url: str, **options: Any) -> VectorStore:
    """Open the store a URL names, e.g. ``qdrant-edge://./my-index``.

    A bare path (no scheme) means Qdrant Edge at that path.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else "qdrant-edge"
    if "://" not in url:
        url = f"qdrant-edge://{url}"
    if scheme not in _REGISTRY:
        raise ValueError(
            f"unknown store scheme {scheme!r} in {urlsplit(url)._replace(netloc='').geturl()!r}; known: {', '.join(registered_schemes())}"
        )
    return _resolve(_REGISTRY[scheme])(url, **options)


#: Options an embedded (Qdrant Edge) store URL may carry in its query string.
EDGE_OPTIONS = ("exact_dense", "storage", "step")


def local_path(url: str) -> str | None:
    """The directory of an embedded-store URL (a bare path or ``qdrant-edge://PATH[?options]``);
    None for a server store. Options and fragments are never part of the path."""
    if "://" not in url:
        url = f"qdrant-edge://{url}"
    scheme, rest = url.split("://", 1)
    if scheme.lower() != "qdrant-edge":
        return None
    path, _, _ = rest.partition("?")
    return path.partition("#")[0]


def rebase_local_url(url: str, base: str | os.PathLike[str]) -> str:
    """``url`` with a relative embedded-store path resolved against ``base`` (config files do this)."""
    path = local_path(url)
    if not path or os.path.isabs(path) or path.startswith("$"):
        return url
    query = url.split("://", 1)[-1][len(path) :]
    return f"qdrant-edge://{Path(base) / path}{query}"


def served_by(url: str) -> str | None:
    """The URL of the running search service that owns the embedded store ``url`` names (it
    holds the engine's one-process lock: search it there); None if none does."""
    path = local_path(url)
    if not path:
        return None
    info = service_file.read(path)
    return info.url if info is not None and info.pid != os.getpid() else None


def open_index_sink(url: str, **options: Any) -> IndexSink:
    """Where an index job writes ``url``'s collection: the store itself, or, while
    ``sparsehybrid serve`` owns that embedded store, a :class:`~.service_store.ServiceStore` that
    writes through the service (the job encodes here and sends point records)."""
    path = local_path(url)
    info = service_file.read(path) if path else None
    if path and info is not None and info.pid != os.getpid():
        from .service_store import ServiceStore

        return ServiceStore(path, info)
    return open_store(url, **options)


def _open_qdrant_edge(url: str, **options: Any) -> VectorStore:
    """The store in this process; a store that a running service owns is refused with the way
    to reach it (search through the service: ``open_searcher``; write: ``open_index_sink``)."""
    rest = url.split("://", 1)[1]
    if "#" in rest:
        raise ValueError(f"qdrant-edge URL {url!r} has a '#fragment'; a store URL takes none")
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError("qdrant-edge:// needs a path, e.g. qdrant-edge://./my-index")
    given = {**dict(parse_qsl(query, keep_blank_values=True)), **options}
    unknown = sorted(set(given) - set(EDGE_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for qdrant-edge://{path}; known: {list(EDGE_OPTIONS)} "
            "(an embedded store is one collection per directory: name the directory instead)"
        )
    if "exact_dense" in given:
        given["exact_dense"] = str(given["exact_dense"]).lower() in ("1", "true", "yes", "on")
    if isinstance(given.get("step"), str):
        try:
            given["step"] = int(given["step"])
        except ValueError:
            raise ValueError(f"step must be a whole number of points, got {given['step']!r}") from None
    service = served_by(url)
    if service is not None:
        raise StoreLockedError(
            f"{path} is open in the search service at {service}: search it there "
            "(sparsehybrid search / open_searcher find it) and index into it with sparsehybrid index"
        )
    from .qdrant_edge import QdrantEdgeStore

    return QdrantEdgeStore(path, **given)
