"""Faults: transient store errors are retried with jittered backoff and lose nothing; a store
that is down gives one clear error, not a stack of retries."""

from __future__ import annotations

import random
import traceback

import pytest

from sparsehybrid.connectors import StoreUnavailableError, open_store
from sparsehybrid.connectors.qdrant_server import QdrantServerStore
from sparsehybrid.connectors.retry import RetryPolicy
from sparsehybrid.ingestion.indexing import Indexer
from tests.support import as_documents, cranfield_rows, free_port


class FaultyClient:
    """Wraps a real ``QdrantClient``: a fraction of upserts fail with what a flaky network or an
    overloaded server produces (timeouts, 429, 503, connection resets) — some *before* the write
    reaches the store, some *after* it (the reply was lost), so retries must also be idempotent."""

    def __init__(self, real, rate: float, seed: int = 7):
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        self._real, self._rate, self._rng = real, rate, random.Random(seed)
        headers = httpx.Headers()
        self._faults = [
            lambda: UnexpectedResponse(429, "Too Many Requests", b"rate limited", headers),
            lambda: UnexpectedResponse(503, "Service Unavailable", b"overloaded", headers),
            lambda: ResponseHandlingException(httpx.ReadTimeout("timed out")),
            lambda: ConnectionResetError(104, "Connection reset by peer"),
        ]
        self.upserts = self.failed_before = self.failed_after = 0

    def upsert(self, *args, **kwargs):
        self.upserts += 1
        if self._rng.random() < self._rate:
            fault = self._rng.choice(self._faults)()
            if self._rng.random() < 0.5:
                self.failed_before += 1
                raise fault
            self._real.upsert(*args, **kwargs)
            self.failed_after += 1
            raise fault
        return self._real.upsert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_transient_upsert_failures_are_retried_and_nothing_is_lost(tmp_path, cranfield):
    from qdrant_client import QdrantClient

    rows = cranfield_rows(cranfield, 120)
    client = FaultyClient(QdrantClient(path=str(tmp_path / "q")), rate=0.35)
    store = QdrantServerStore(
        client,
        "flaky",
        safe_url="qdrant-local://flaky",
        batch_size=5,
        retry=RetryPolicy(attempts=8, base_delay=0.001, max_delay=0.01),
    )
    stats = Indexer(store, bm25=True, batch_size=10).index(as_documents(rows))
    assert client.failed_before > 3 and client.failed_after > 3  # faults really happened, both kinds
    assert stats.added == 120 and not stats.rejected
    ids = [p.payload["doc_id"] for p in store.iter_points()]
    assert store.count() == 120 and sorted(ids) == sorted(r["_id"] for r in rows)  # exact: no loss, no duplicate
    stored = store.document_states()
    again = Indexer(store, bm25=True).index(as_documents(rows))
    assert again.unchanged == 120 and store.document_states() == stored
    store.close()


def test_backoff_is_jittered_and_bounded():
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for attempt in range(1, 6):
        delays = {policy.delay(attempt, rng) for _ in range(20)}
        assert len(delays) == 20  # jitter: concurrent clients do not retry in lockstep
        assert all(0 <= d <= min(4.0, 0.5 * 2 ** (attempt - 1)) for d in delays)


def _assert_one_clean_error(err: BaseException, url: str, attempts: int) -> None:
    text = "".join(traceback.format_exception(err))
    assert url in str(err) and f"after {attempts} attempt(s)" in str(err)
    assert err.__cause__ is None and err.__suppress_context__
    assert "During handling of the above exception" not in text and "direct cause" not in text
    assert text.count("Traceback") == 1


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_search_engine_down_at_query_time_gives_one_clear_error(engine):
    port = free_port()
    store = open_store(f"{engine}://127.0.0.1:{port}/idx?retries=3&timeout=2")  # constructing contacts nothing
    with pytest.raises(StoreUnavailableError) as info:
        store.search_bm25("wing flutter", 10)
    _assert_one_clean_error(info.value, f"{engine}://127.0.0.1:{port}/idx", 3)
    store.close()


def test_qdrant_server_down_gives_one_clear_error():
    port = free_port()
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"qdrant://127.0.0.1:{port}/coll?retries=2&timeout=1")
    _assert_one_clean_error(info.value, f"qdrant://127.0.0.1:{port}/coll", 2)


def test_cli_search_against_a_down_store_prints_one_line(tmp_path):
    from typer.testing import CliRunner

    from sparsehybrid.cli import app

    port = free_port()
    result = CliRunner().invoke(
        app, ["search", "wing", "--store", f"elasticsearch://127.0.0.1:{port}/idx?retries=2&timeout=1"]
    )
    assert result.exit_code == 1
    out = result.output.strip()
    assert "Traceback" not in out and "unavailable after 2 attempt(s)" in out
    assert len([line for line in out.splitlines() if line.strip()]) <= 3
