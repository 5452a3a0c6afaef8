"""The relevance page (``GET /ui``): two search configurations side by side, with each hit's
per-retriever ranks, contributions and matched tokens, and NDCG@10 when judgements are given.

Plain HTML, JS and CSS shipped in the package (``service/ui/``): no build step, and a
Content-Security-Policy of ``'self'`` so the page can reach nothing but this service. The page
files are open (a browser loads them without a header); what they call (``/ui/config``,
``/search``) needs the API key like every other endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from ..evaluation.beir import read_qrels, read_queries
from ..fusion import FUSIONS
from .core import SearchService

#: The page's files: served without the API key (they hold no data).
UI_FILES = {"index.html": "text/html", "ui.js": "text/javascript", "ui.css": "text/css"}
UI_PATHS = frozenset({"/ui", "/ui/", *(f"/ui/{name}" for name in UI_FILES)})
#: Only this service: no CDN, no fonts, no beacons; the page's scripts and styles are files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass
class Judgements:
    """Relevance judgements the page scores against: ``qrels`` (query id -> doc id -> gain) and
    the queries' text where known (so the page can offer them by text)."""

    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def load(cls, qrels_path: str | Path) -> Judgements:
        """A BEIR qrels TSV; its queries from ``queries.jsonl`` of the same BEIR folder
        (``<folder>/qrels/<split>.tsv``) when there is one."""
        path = Path(qrels_path)
        qrels = read_qrels(path)
        beside = path.resolve().parent.parent / "queries.jsonl"
        queries = read_queries(beside) if beside.is_file() else {}
        return cls(qrels, {q: t for q, t in queries.items() if q in qrels}, str(path))


def _page_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("ui", name).read_bytes()


def mount_ui(app: FastAPI, service: SearchService, judgements: Judgements | None = None) -> None:
    """Add the page's routes to ``app``. Hidden from the OpenAPI docs: a page, not an API."""
    hidden: dict[str, Any] = {"include_in_schema": False}
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    files = {name: _page_file(name) for name in UI_FILES}  # read once: the package does not change

    def serve(name: str) -> Response:
        return Response(files[name], media_type=UI_FILES[name], headers={**headers, "Cache-Control": "no-cache"})

    @app.get("/ui", **hidden)
    @app.get("/ui/", **hidden)
    def page() -> Response:
        return serve("index.html")

    @app.get("/ui/ui.js", **hidden)
    def script() -> Response:
        return serve("ui.js")

    @app.get("/ui/ui.css", **hidden)
    def style() -> Response:
        return serve("ui.css")

    @app.get("/ui/config", **hidden)
    def config() -> dict[str, Any]:
        """What the page needs to build its controls and explain RRF contributions: the
        retrievers, the default fusion with its k and weights, and the judgements."""
        searcher = service._searcher
        given = judgements or Judgements()
        return {
            "retrievers": searcher.retrievers if searcher else [],
            "fusion": searcher.fusion if searcher else None,
            "rrf_k": searcher.rrf_k if searcher else None,
            "weights": dict(searcher.weights) if searcher else {},
            "fusions": sorted(FUSIONS),
            "reranker": searcher.reranker is not None if searcher else False,
            "judgements": {"source": given.source, "qrels": given.qrels, "queries": given.queries},
        }
