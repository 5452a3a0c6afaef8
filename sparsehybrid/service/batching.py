"""Dynamic batching with backpressure, as text-embeddings-inference and Triton serve requests.

Searches that arrive within a short window with the same options are answered by one
``HybridSearcher.search_batch`` (one encoder call per encoder, one store batch request), each
caller getting exactly the hits it would get alone. A fixed number of worker threads take work
from one bounded queue: when the queue is full a caller is refused at once (:class:`Overloaded`,
HTTP 429 with ``Retry-After``) instead of waiting without bound, and a caller that waits longer
than its deadline gets :class:`DeadlineExceeded` (504) while its queued work is dropped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..search import SearchOptions, SearchResults

#: How a worker answers a group of queries that share options (``HybridSearcher.search_batch``).
BatchSearch = Callable[[list[str], SearchOptions], list[SearchResults]]


class Overloaded(Exception):
    """The queue is full: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, queued: int):
        self.retry_after = retry_after
        super().__init__(f"the service is busy ({queued} searches queued); retry after {retry_after:.0f} s")


class DeadlineExceeded(TimeoutError):
    """The search was not answered within its deadline."""


@dataclass(eq=False)
class _Work:
    queries: list[str]
    options: SearchOptions
    deadline: float
    future: Future[list[SearchResults]] = field(default_factory=Future)


@dataclass(frozen=True)
class BatchingSettings:
    """``workers`` threads search at once; each takes what arrives within ``window_s`` of its
    first request (up to ``max_batch`` queries) into one batch; at most ``max_queue`` requests
    wait; a request not answered within ``timeout_s`` is dropped with 504."""

    workers: int = 2
    window_s: float = 0.002
    max_batch: int = 32
    max_queue: int = 256
    timeout_s: float = 30.0

    def check(self) -> None:
        if self.workers < 1 or self.max_batch < 1 or self.max_queue < 1:
            raise ValueError("--workers, the maximum batch and the queue size must be >= 1")
        if not 0 <= self.window_s <= 1 or self.timeout_s <= 0:
            raise ValueError("the batch window must be 0-1000 ms and the request timeout > 0")


class DynamicBatcher:
    """Bounded queue + worker threads that merge concurrent searches into batches."""

    def __init__(self, search_batch: BatchSearch, settings: BatchingSettings):
        settings.check()
        self.settings = settings
        self._search_batch = search_batch
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=settings.max_queue)
        self._recent = 0.05  # seconds one batch took lately: what Retry-After is made of
        self._threads = [
            threading.Thread(target=self._run, name=f"sparsehybrid-search-{i}", daemon=True)
            for i in range(settings.workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, queries: Sequence[str], options: SearchOptions) -> Future[list[SearchResults]]:
        """Queue a search; its future resolves to one result per query. Raises :class:`Overloaded`
        at once when the queue is full."""
        work = _Work(list(queries), options, time.monotonic() + self.settings.timeout_s)
        try:
            self._queue.put_nowait(work)
        except queue.Full:
            waves = self.settings.max_queue / max(1, self.settings.workers * self.settings.max_batch)
            raise Overloaded(max(1.0, round(self._recent * (waves + 1))), self.queued) from None
        return work.future

    def search(self, queries: Sequence[str], options: SearchOptions) -> list[SearchResults]:
        """:meth:`submit` and wait for the answer (at most the deadline)."""
        future = self.submit(queries, options)
        try:
            return future.result(timeout=self.settings.timeout_s)
        except TimeoutError:
            raise self._dropped(future) from None

    async def search_async(self, queries: Sequence[str], options: SearchOptions) -> list[SearchResults]:
        """:meth:`search` for an event loop: the caller waits without holding a thread."""
        future = self.submit(queries, options)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.timeout_s)
        except TimeoutError:
            raise self._dropped(future) from None

    def _dropped(self, future: Future[list[SearchResults]]) -> DeadlineExceeded:
        """The search is past its deadline: drop it (a queued one is never run) and say so."""
        future.cancel()
        return DeadlineExceeded(f"no answer within {self.settings.timeout_s:g} s; the search was dropped")

    def close(self) -> None:
        """Stop the workers after the work already queued."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=self.settings.timeout_s)

    # -- workers -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._gather(first)
            for group in _by_options(batch):
                self._answer(group)

    def _gather(self, first: _Work) -> list[_Work]:
        """``first`` and whatever else arrives within the window, up to the batch size."""
        batch, size = [first], len(first.queries)
        until = time.monotonic() + self.settings.window_s
        while size < self.settings.max_batch:
            left = until - time.monotonic()
            try:
                work = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if work is None:  # closing: put the stop back for this worker's next loop
                self._queue.put(None)
                break
            batch.append(work)
            size += len(work.queries)
        return batch

    def _answer(self, group: list[_Work]) -> None:
        now = time.monotonic()
        live = [w for w in group if w.future.set_running_or_notify_cancel() and w.deadline > now]
        for w in group:
            if w not in live and not w.future.done():
                w.future.set_exception(DeadlineExceeded("the search waited past its deadline in the queue"))
        if not live:
            return
        t = time.perf_counter()
        try:
            results = self._search_batch([q for w in live for q in w.queries], live[0].options)
        except BaseException as exc:  # each caller gets the error its own search would raise
            for w in live:
                w.future.set_exception(exc)
            return
        self._recent = 0.8 * self._recent + 0.2 * (time.perf_counter() - t)
        it = iter(results)
        for w in live:
            w.future.set_result([next(it) for _ in w.queries])


def _by_options(batch: list[_Work]) -> list[list[_Work]]:
    """Requests grouped by identical options, in arrival order (one search_batch per group)."""
    groups: dict[str, list[_Work]] = {}
    for w in batch:
        groups.setdefault(w.options.model_dump_json(), []).append(w)
    return list(groups.values())
