"""What every framework adapter does the same way: a hit's metadata, and which searchers are async.

Kept free of any framework import, so each adapter module pulls in only its own framework.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..types import Hit


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """The document's own metadata, then the hit's id, score, title, span and why (the hit's keys
    win on a clash). ``explanation`` is the one-line summary (what a prompt or a log can show);
    ``explanation_detail`` the structured form the service sends (per-retriever rank and score,
    fusion, rerank score, matched tokens)."""
    return {
        **hit.metadata,
        "doc_id": hit.doc_id,
        "score": hit.score,
        "title": hit.title,
        "chunk": hit.chunk,
        "span": list(hit.span) if hit.span else None,
        "explanation": hit.explanation.summary(),
        "explanation_detail": hit.to_dict()["explanation"],
    }


def is_async(searcher: Any) -> bool:
    """True for an :class:`~sparsehybrid.search.AsyncSearcher` such as
    :class:`~sparsehybrid.client.AsyncSearchClient` (its ``search`` is awaited)."""
    return inspect.iscoroutinefunction(searcher.search)
