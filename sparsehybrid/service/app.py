"""The FastAPI app: search endpoints for clients, ``/store`` endpoints for index jobs.

Bad requests get 4xx with the library's own one-line messages (the CLI prints the same), as
``{"error": class, "kind": family, "detail": message}``.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..connectors.base import (
    CollectionSchema,
    EncoderMismatchError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)
from ..search import SearchResults
from .core import SearchService
from .discovery import WRITE_TOKEN_HEADER
from .metrics import ServiceMetrics
from .models import (
    BatchRequest,
    BatchResponse,
    CountRequest,
    ErrorResponse,
    IdsRequest,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
)
from .settings import ServiceSettings
from .ui import UI_PATHS, Judgements, mount_ui
from .wire import record_from_json

log = logging.getLogger("sparsehybrid.service")
#: Error families an index job's ServiceStore raises again as the same class.
KINDS = ("EncoderMismatchError", "StoreLockedError", "StoreError", "ValueError")
ERROR_STATUS = {"ValueError": 400, "EncoderMismatchError": 409, "StoreLockedError": 503, "StoreError": 409}
STORE_PREFIX = "/store/"
OPEN_PATHS = frozenset({"/healthz", *UI_PATHS})  # the page's files; its data calls need the key


def error_body(exc: BaseException) -> dict[str, str]:
    kind = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in KINDS), "StoreError")
    return {"error": type(exc).__name__, "kind": kind, "detail": str(exc)}


def error_status(exc: BaseException) -> int:
    if isinstance(exc, StoreUnavailableError):
        return 503
    return ERROR_STATUS[error_body(exc)["kind"]]


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are read whole (Content-Length, or
    counted while streaming when it is absent)."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.settings.max_write_bytes if path.startswith(STORE_PREFIX) else self.settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": "RequestTooLarge", "kind": "ValueError", "detail": f"request body is over the {limit}-byte limit"},
        status_code=413,
    )


def create_app(
    service: SearchService,
    settings: ServiceSettings,
    *,
    write_token: str | None = None,
    judgements: Judgements | None = None,
) -> FastAPI:
    """The app for ``service``. ``write_token`` enables the ``/store`` endpoints (index jobs);
    ``judgements`` are what the relevance page (``/ui``) scores against."""
    settings.check()
    metrics = ServiceMetrics()
    app = FastAPI(
        title="sparsehybrid search service",
        version=__version__,
        description="Hybrid (learned sparse + dense + BM25) search over one index, with warm models.",
        responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    )
    app.state.service = service
    app.state.metrics = metrics

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith(STORE_PREFIX):
            given = request.headers.get(WRITE_TOKEN_HEADER, "")
            if not write_token or not hmac.compare_digest(given.encode(), write_token.encode()):
                return _unauthorized("writes need the token in the store's service file")
        elif settings.api_key and path not in OPEN_PATHS:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                return _unauthorized("missing or wrong API key: send 'Authorization: Bearer KEY'")
        t = time.perf_counter()
        metrics.in_flight.inc()
        try:
            response = await call_next(request)
        finally:
            metrics.in_flight.dec()
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - t)
        return response

    def _unauthorized(detail: str) -> JSONResponse:
        metrics.errors.labels("auth", "Unauthorized").inc()
        return JSONResponse(
            {"error": "Unauthorized", "kind": "ValueError", "detail": detail},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(ValueError)
    @app.exception_handler(StoreError)
    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.labels(request.url.path, type(exc).__name__).inc()
        return JSONResponse(error_body(exc), status_code=error_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg")).removeprefix("Value error, ")
        detail = f"{where}: {msg}" if where else msg
        metrics.errors.labels(request.url.path, "ValidationError").inc()
        return JSONResponse({"error": "ValidationError", "kind": "ValueError", "detail": detail}, status_code=422)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, settings=settings)

    def options_of(req: SearchRequest | BatchRequest) -> dict[str, Any]:
        if req.top_k > settings.max_top_k:
            raise ValueError(f"top_k is {req.top_k}; this service's limit is {settings.max_top_k}")
        if req.candidates > settings.max_candidates:
            raise ValueError(f"candidates is {req.candidates}; this service's limit is {settings.max_candidates}")
        return req.model_dump(exclude={"query", "queries"})

    def respond(results: SearchResults, mode: str) -> SearchResponse:
        metrics.search_seconds.labels(mode).observe(results.timing.total)
        return SearchResponse.of(results)

    @app.post("/search", response_model=SearchResponse, tags=["search"])
    def search(req: SearchRequest) -> SearchResponse:
        """Top ``top_k`` documents for ``query`` (the options of ``HybridSearcher.search``)."""
        return respond(service.search(req.query, **options_of(req)), req.mode)

    @app.post("/search/batch", response_model=BatchResponse, tags=["search"])
    def search_batch(req: BatchRequest) -> BatchResponse:
        """Several queries with the same options, answered in order."""
        if len(req.queries) > settings.max_batch:
            raise ValueError(f"{len(req.queries)} queries in one batch; this service's limit is {settings.max_batch}")
        options = options_of(req)
        return BatchResponse(results=[respond(r, req.mode) for r in service.search_batch(req.queries, **options)])

    @app.get("/info", tags=["service"])
    def info() -> dict[str, Any]:
        """What the index holds (as ``sparsehybrid info --json``) and how the service searches it."""
        from ..cli.searching import describe_open_store

        out = describe_open_store(service.store)
        searcher = service._searcher
        out["service"] = {
            "version": __version__,
            "ready": searcher is not None,
            "retrievers": searcher.retrievers if searcher else [],
            "fusion": searcher.fusion if searcher else None,
            "reranker": searcher.reranker is not None if searcher else False,
            "max_top_k": settings.max_top_k,
            "uptime_s": round(time.time() - service.started, 1),
        }
        return out

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Alive; ``ready`` once models are loaded (false on an index with no collection yet)."""
        return {"status": "ok", "ready": service.ready}

    @app.get("/metrics", tags=["service"])
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    mount_ui(app, service, judgements)
    if write_token:
        _store_routes(app, service, metrics)
    return app


def _store_routes(app: FastAPI, service: SearchService, metrics: ServiceMetrics) -> None:
    """What an index job's :class:`~sparsehybrid.connectors.service_store.ServiceStore` calls.
    Hidden from the OpenAPI docs: it is an internal protocol, not an API."""
    store = service.store
    hidden: dict[str, Any] = {"include_in_schema": False}

    @app.get("/store/schema", **hidden)
    def get_schema() -> dict[str, Any] | None:
        schema = store.schema
        return schema.to_dict() if schema is not None else None

    @app.post("/store/schema", **hidden)
    def ensure_schema(body: dict[str, Any]) -> dict[str, Any]:
        with service.write_lock:
            return store.ensure_schema(CollectionSchema.from_dict(body)).to_dict()

    @app.post("/store/fusion", **hidden)
    def record_fusion(body: dict[str, Any]) -> dict[str, Any] | None:
        return service.record_fusion(body.get("setting"))

    @app.post("/store/upsert", **hidden)
    def upsert(body: UpsertRequest) -> dict[str, int]:
        try:
            records = [record_from_json(r) for r in body.records]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed point record: {exc!r}") from None
        with service.write_lock:
            written = store.upsert(records)  # one engine update: all of the batch, or none of it
        metrics.points_written.inc(written)
        return {"written": written}

    @app.post("/store/delete_points", **hidden)
    def delete_points(body: IdsRequest) -> dict[str, int]:
        with service.write_lock:
            store.delete_points(body.ids)
        return {"deleted": len(body.ids)}

    @app.post("/store/delete_documents", **hidden)
    def delete_documents(body: IdsRequest) -> dict[str, int]:
        with service.write_lock:
            store.delete_documents(body.ids)
        return {"deleted": len(body.ids)}

    @app.post("/store/flush", **hidden)
    def flush() -> dict[str, bool]:
        with service.write_lock:
            store.flush()
        return {"ok": True}

    @app.post("/store/optimize", **hidden)
    def optimize() -> dict[str, bool]:
        with service.write_lock:
            store.optimize()
        return {"ok": True}

    @app.post("/store/count", **hidden)
    def count(body: CountRequest) -> int:
        return store.count(body.filter)

    @app.post("/store/get", **hidden)
    def get(body: IdsRequest) -> list[dict[str, Any]]:
        return [{"id": p.id, "payload": p.payload} for p in store.get(body.ids)]

    @app.post("/store/points", **hidden)
    def points() -> list[dict[str, Any]]:
        return [{"id": p.id, "payload": p.payload} for p in store.iter_points()]

    @app.get("/store/document_states", **hidden)
    def document_states() -> dict[str, tuple[str, int]]:
        return store.document_states()


__all__ = ["EncoderMismatchError", "StoreLockedError", "create_app"]
