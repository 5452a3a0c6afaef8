"""A thin Python client for ``sparsehybrid serve``: search without torch or models in the process.

``SearchClient(url).search(...)`` takes the :class:`~sparsehybrid.search.SearchOptions` of
:meth:`HybridSearcher.search` (implementing the same :class:`~sparsehybrid.search.Searcher`) and
returns the same :class:`~sparsehybrid.search.SearchResults` of :class:`~sparsehybrid.types.Hit`;
:class:`AsyncSearchClient` is the asyncio twin. Connect errors, timeouts and 429/502/503/504 are
retried with jittered exponential backoff (a search is read-only, so repeating it is safe); a
bad request raises the library's own exception class with the service's one-line message.
Needs only ``httpx`` (``pip install sparsehybrid[client]``).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from .connectors.base import EncoderMismatchError, StoreError, StoreLockedError, StoreUnavailableError
from .connectors.retry import TRANSIENT_STATUSES
from .search import SearchOptions, SearchResults, SearchTiming
from .types import Hit

API_KEY_ENV = "SPARSEHYBRID_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
_KINDS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "EncoderMismatchError": EncoderMismatchError,
    "StoreLockedError": StoreLockedError,
    "StoreError": StoreError,
}


class _Transient(Exception):
    def __init__(self, status: int, detail: str):
        self.status = status
        super().__init__(f"HTTP {status}: {detail}")


def _body(options: SearchOptions | None, overrides: dict[str, Any], **queries: Any) -> dict[str, Any]:
    """A request body: the validated options (checked here, before any request) and the query or queries."""
    return {**queries, **SearchOptions.of(options, **overrides).as_kwargs()}


def _results(data: Mapping[str, Any]) -> SearchResults:
    return SearchResults([Hit.from_dict(h) for h in data["hits"]], SearchTiming.from_ms(data.get("timing_ms", {})))


def _check(response: httpx.Response) -> Any:
    """The JSON of a 2xx; raises _Transient for a retryable status, else the library's error."""
    if response.status_code < 400:
        return response.json()
    try:
        body = response.json()
        detail, kind = str(body.get("detail")), str(body.get("kind", "StoreError"))
    except ValueError:
        detail, kind = response.text.strip()[:300] or response.reason_phrase, "StoreError"
    if response.status_code in TRANSIENT_STATUSES:
        raise _Transient(response.status_code, detail)
    if response.status_code in (401, 403):
        raise PermissionError(f"{response.request.url.copy_with(query=None)}: {detail}")
    raise _KINDS.get(kind, StoreError)(detail)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (_Transient, httpx.TransportError))


class _Base:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    def __repr__(self) -> str:  # no key in reprs
        return f"{type(self).__name__}({self.url!r})"

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))

    def _give_up(self, last: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"{self.url} is unavailable after {self.retries + 1} attempt(s): {type(last).__name__}: {last}. "
            "Check that `sparsehybrid serve` is running and reachable."
        )


class SearchClient(_Base):
    """Search a running service, synchronously. Thread-safe; close it (or use ``with``) when done.

    ``api_key`` defaults to ``$SPARSEHYBRID_API_KEY``; ``retries`` is how many times a transient
    failure is retried; ``timeout`` is seconds per attempt.
    """

    def __init__(self, url: str = DEFAULT_URL, *, transport: httpx.BaseTransport | None = None, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout, headers=self._headers, transport=transport)

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        last: BaseException | None = None
        for attempt in range(1, self.retries + 2):
            try:
                return _check(self._http.request(method, path, json=body))
            except Exception as exc:
                if not _transient(exc):
                    raise
                last = exc
                if attempt <= self.retries:
                    time.sleep(self._delay(attempt))
        assert last is not None
        raise self._give_up(last) from None

    def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults:
        """As :meth:`HybridSearcher.search`, answered by the service."""
        return _results(self._request("POST", "/search", _body(options, overrides, query=query)))

    def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]:
        """:meth:`search` for each query (same options for all), in order, in one request."""
        body = _body(options, overrides, queries=list(queries))
        return [_results(r) for r in self._request("POST", "/search/batch", body)["results"]]

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/info")

    def healthz(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSearchClient(_Base):
    """:class:`SearchClient` for asyncio: the same methods, awaited."""

    def __init__(self, url: str = DEFAULT_URL, *, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any):
        super().__init__(url, **kwargs)
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=self.timeout, headers=self._headers, transport=transport
        )

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        last: BaseException | None = None
        for attempt in range(1, self.retries + 2):
            try:
                return _check(await self._http.request(method, path, json=body))
            except Exception as exc:
                if not _transient(exc):
                    raise
                last = exc
                if attempt <= self.retries:
                    import asyncio  # here: importing asyncio costs a sync client ~0.08 s

                    await asyncio.sleep(self._delay(attempt))
        assert last is not None
        raise self._give_up(last) from None

    async def search(self, query: str, options: SearchOptions | None = None, /, **overrides: Any) -> SearchResults:
        return _results(await self._request("POST", "/search", _body(options, overrides, query=query)))

    async def search_batch(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **overrides: Any
    ) -> list[SearchResults]:
        body = _body(options, overrides, queries=list(queries))
        return [_results(r) for r in (await self._request("POST", "/search/batch", body))["results"]]

    async def info(self) -> dict[str, Any]:
        return await self._request("GET", "/info")

    async def healthz(self) -> dict[str, Any]:
        return await self._request("GET", "/healthz")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSearchClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncSearchClient", "SearchClient"]
