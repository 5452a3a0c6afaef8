"""The write side of an embedded store owned by a running search service.

``open_index_sink("qdrant-edge://PATH")`` returns this when ``sparsehybrid serve`` holds PATH (see
:mod:`.service_file`): an index job (CLI, config job, Prefect deployment) encodes in its own
process and sends each batch of point records to the service, which writes it to the store it
already has open. Searches keep running; the engine's one-process lock is never contested. It is
an :class:`~.sink.IndexSink`, not a ``VectorStore``: it cannot search (searches go to the service).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from ..types import PointRecord, ScoredPoint
from . import base, service_file
from .base import CollectionSchema, StoreError
from .point_json import record_to_json
from .retry import TRANSIENT_STATUSES, RetryPolicy, call_with_retries, describe_error
from .service_file import WRITE_TOKEN_HEADER, ServiceInfo

T = TypeVar("T")

#: How a job's calls ride out a service restart (the new service publishes itself once its
#: models are loaded: 10-20 s on a busy 2-core machine): backoff up to 8 s, for at least a minute
#: whatever the jitter draws (8 attempts alone averaged ~20 s, but could end within seconds).
RESTART_POLICY = RetryPolicy(attempts=8, base_delay=1.0, max_delay=8.0, patience=60.0)

#: Errors the service reports by name, raised here as the same class.
_ERRORS: dict[str, type[Exception]] = {
    "EncoderMismatchError": base.EncoderMismatchError,
    "StoreLockedError": base.StoreLockedError,
    "StoreError": StoreError,
    "ValueError": ValueError,
}


#: How much an index job writing through a service lowers its CPU priority (``nice``; 0: not at
#: all). Job and service share the machine, and the job's encoding would otherwise take the cores
#: from the searches the service exists to keep fast; the job only takes longer.
JOB_NICE_ENV = "SPARSEHYBRID_JOB_NICE"
_reniced = False


def yield_cpu_to_searches() -> int:
    """Lower this process's CPU priority once (by ``$SPARSEHYBRID_JOB_NICE``, default 10); returns
    the increment applied. On Linux it applies to this thread and every thread created after it,
    so it is called when the store is opened, before encoders start their threads."""
    global _reniced
    if _reniced:
        return 0
    _reniced = True
    try:
        step = int(os.environ.get(JOB_NICE_ENV, "10"))
    except ValueError:
        raise ValueError(f"{JOB_NICE_ENV} must be an integer (0 to keep the priority)") from None
    if step > 0 and hasattr(os, "nice"):
        os.nice(step)
        return step
    return 0


class ServiceError(Exception):
    """A non-2xx answer from the service (kept for the transient-error test)."""

    def __init__(self, status: int, kind: str, detail: str):
        self.status, self.kind, self.detail = status, kind, detail
        super().__init__(f"HTTP {status}: {detail}")


class ServiceStore:
    """The collection at ``path`` as its service exposes it under ``/store``: writes and the
    reads an index job needs (schema, document states, counts). Every request is retried when
    transient, then fails as one :class:`StoreError` (or the class the service named)."""

    def __init__(self, path: str, info: ServiceInfo, *, timeout: float = 120.0, policy: RetryPolicy | None = None):
        import httpx

        self.path = path
        self._info = info
        self._lock = threading.RLock()
        self._policy = policy or RESTART_POLICY
        self._http = httpx.Client(base_url=info.url, timeout=timeout, headers={WRITE_TOKEN_HEADER: info.token})
        #: The schema as last read or written: a job reads it often (planning, the BM25 length
        #: estimate) and only this job's ``ensure_schema`` / ``save_fusion`` change it meanwhile.
        self._schema: CollectionSchema | None = None
        self._schema_read = False
        yield_cpu_to_searches()

    def __repr__(self) -> str:
        return f"ServiceStore({self.url!r} via {self._info.url})"

    def __enter__(self) -> ServiceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def served_by(self) -> str:
        return self._info.url

    @property
    def url(self) -> str:
        return f"qdrant-edge://{self.path}"

    @property
    def secrets(self) -> list[str]:
        return [self._info.token]

    def _is_transient(self, exc: BaseException) -> bool:
        import httpx

        if isinstance(exc, ServiceError):
            return exc.status in TRANSIENT_STATUSES
        return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))

    def _request(self, what: str, method: str, path: str, body: Any = None) -> Any:
        def send() -> Any:
            try:
                r = self._http.request(method, f"/store/{path}", json=body)
            except Exception:
                self._refresh()  # a restarted service may listen elsewhere; the retry finds it
                raise
            if r.status_code == 401 and self._refresh():  # restarted: a new token
                r = self._http.request(method, f"/store/{path}", json=body)
            if r.status_code >= 400:
                try:
                    data = r.json()
                except ValueError:
                    data = {}
                raise ServiceError(r.status_code, str(data.get("kind", "")), str(data.get("detail", r.text)))
            return r.json()

        return self._call(what, send)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return call_with_retries(
                fn, is_transient=self._is_transient, where=self.url, policy=self._policy, secrets=self.secrets
            )
        except ServiceError as exc:  # not transient: the service's own one-line message, as the same class
            raise _ERRORS.get(exc.kind, StoreError)(exc.detail) from None
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.url}: {what} failed: {describe_error(exc, self.secrets)}") from None

    def _refresh(self) -> bool:
        """Follow a restarted service (new pid, token, maybe port); True if it changed."""
        info = service_file.read(self.path)
        if info is None or info == self._info:
            return False
        self._info = info
        self._http.base_url = info.url
        self._http.headers[WRITE_TOKEN_HEADER] = info.token
        return True

    # -- the collection ------------------------------------------------------------------------
    @property
    def schema(self) -> CollectionSchema | None:
        """Read once, then kept (see ``__init__``)."""
        with self._lock:
            if not self._schema_read:
                data = self._request("reading the schema", "GET", "schema")
                self._schema = CollectionSchema.from_dict(data) if data is not None else None
                self._schema_read = True
            return self._schema

    def _remember(self, data: Mapping[str, Any]) -> CollectionSchema:
        with self._lock:
            self._schema, self._schema_read = CollectionSchema.from_dict(data), True
            return self._schema

    def ensure_schema(self, wanted: CollectionSchema) -> CollectionSchema:
        return self._remember(self._request("creating the collection", "POST", "schema", wanted.to_dict()))

    def save_fusion(self, setting: Mapping[str, Any] | None) -> CollectionSchema:
        """Recorded by the service, which searches with it from then on."""
        self._request("recording the fusion", "POST", "fusion", {"setting": dict(setting) if setting else None})
        data = self._request("reading the schema", "GET", "schema")
        if data is None:
            raise StoreError(f"{self.url} holds no collection yet: run `sparsehybrid index` first")
        return self._remember(data)

    def close(self) -> None:
        self._http.close()  # the service keeps the store open

    def flush(self) -> None:
        self._request("flushing", "POST", "flush")

    def optimize(self) -> None:
        self._request("optimizing", "POST", "optimize")

    def bm25_doc_length(self, text: str) -> int:
        from .qdrant_edge import bm25_term_frequencies  # the engine's analyzer, no store needed

        schema = self.schema
        return sum(bm25_term_frequencies(text, schema.bm25_language if schema else "english").values())

    # -- writes --------------------------------------------------------------------------------
    def upsert(self, records: Sequence[PointRecord]) -> int:
        """Send the batch; the service learns metadata fields and writes it (one engine update)."""
        if not records:
            return 0
        body = {"records": [record_to_json(r) for r in records]}
        return int(self._request(f"writing {len(records)} points", "POST", "upsert", body)["written"])

    def delete_points(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self._request("deleting points", "POST", "delete_points", {"ids": list(point_ids)})

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if doc_ids:
            self._request("deleting documents", "POST", "delete_documents", {"ids": list(doc_ids)})

    # -- reads ---------------------------------------------------------------------------------
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        return int(self._request("counting", "POST", "count", {"filter": filter}))

    def get(self, point_ids: Sequence[str]) -> list[ScoredPoint]:
        rows = self._request("reading points", "POST", "get", {"ids": list(point_ids)}) if point_ids else []
        return [ScoredPoint(r["id"], 0.0, r["payload"]) for r in rows]

    def iter_points(self) -> Iterator[ScoredPoint]:
        for r in self._request("reading points", "POST", "points", {}):
            yield ScoredPoint(r["id"], 0.0, r["payload"])

    def document_states(self) -> dict[str, tuple[str, int]]:
        data = self._request("reading document states", "GET", "document_states")
        return {k: (v[0], int(v[1])) for k, v in data.items()}
