"""``open_store(url)``: map URL schemes to backends, so new backends plug in by registering.

Backends are imported lazily: using Qdrant Edge never imports the Elasticsearch client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .base import VectorStore

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


def _open_qdrant_edge(url: str, **options: Any) -> VectorStore:
    from .qdrant_edge import QdrantEdgeStore

    path = url.split("://", 1)[1]
    if not path:
        raise ValueError("qdrant-edge:// needs a path, e.g. qdrant-edge://./my-index")
    return QdrantEdgeStore(path, **options)
