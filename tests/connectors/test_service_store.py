"""The write side of a served embedded store: found through the service file, an index sink (not
a store that cannot search), and cheap on schema reads."""

from __future__ import annotations

import json
import os

import pytest

from sparsehybrid.connectors import StoreLockedError, VectorStore, open_index_sink, open_store, served_by
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.connectors.retry import RetryPolicy, call_with_retries
from sparsehybrid.connectors.service_file import SERVICE_FILE
from sparsehybrid.connectors.service_store import ServiceStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import HybridSearcher
from sparsehybrid.service import discovery
from sparsehybrid.service.app import create_app
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from tests.support import as_documents, cranfield_rows, free_port, serving


def _claim(store_dir, url: str) -> None:
    """A service file naming another live process (this test's parent), as a running service would."""
    (store_dir / SERVICE_FILE).write_text(json.dumps({"url": url, "pid": os.getppid(), "token": "t0ken"}))


def test_a_served_store_is_written_through_a_sink_and_never_opened_as_a_store(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    _claim(idx, "http://127.0.0.1:9")
    url = f"qdrant-edge://{idx}"
    assert served_by(url) == "http://127.0.0.1:9"
    with pytest.raises(StoreLockedError, match=r"open in the search service at http://127\.0\.0\.1:9"):
        open_store(url)
    sink = open_index_sink(url)
    try:
        assert isinstance(sink, ServiceStore)
        assert not isinstance(sink, VectorStore) and not hasattr(sink, "search_batch")
        assert sink.served_by == "http://127.0.0.1:9" and "t0ken" not in repr(sink)
    finally:
        sink.close()
    (idx / SERVICE_FILE).unlink()
    store = open_index_sink(url)  # no service: the store itself, searched in-process
    try:
        assert isinstance(store, QdrantEdgeStore) and store.served_by is None and served_by(url) is None
    finally:
        store.close()


def test_an_index_job_reads_the_served_schema_once(tmp_path, cranfield, tf_encoder, monkeypatch):
    """Planning and the BM25 length estimate read the schema often: one GET, not one per read."""
    monkeypatch.setenv("SPARSEHYBRID_JOB_NICE", "0")
    (tmp_path / "idx").mkdir()
    store = QdrantEdgeStore(tmp_path / "idx")
    svc = SearchService(store, lambda s: HybridSearcher(s, tf_encoder))
    port = free_port()
    info = discovery.publish(tmp_path / "idx", f"http://127.0.0.1:{port}")
    job = ServiceStore(str(tmp_path / "idx"), info, policy=RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1))
    requests: list[str] = []
    send = job._http.request
    monkeypatch.setattr(
        job._http, "request", lambda method, path, **kw: requests.append(f"{method} {path}") or send(method, path, **kw)
    )
    try:
        with serving(create_app(svc, ServiceSettings(), write_token=info.token), port):
            docs = as_documents(cranfield_rows(cranfield, 80))
            stats = Indexer(job, tf_encoder, bm25=True, batch_size=32).index(docs)
            assert stats.added == 80 and store.count() == 80
            assert requests.count("GET /store/schema") == 1
            schema = job.schema
            assert schema is not None and schema.bm25_avg_len == pytest.approx(store.schema.bm25_avg_len)
            setting = {"method": "rrf", "k": 30, "weights": {"sparse": 1.0, "bm25": 0.5}}
            assert job.save_fusion(setting).fusion == setting and job.schema.fusion == setting  # not a stale copy
    finally:
        job.close()
        svc.close()


def test_a_job_waits_out_a_service_restart_however_short_the_jittered_waits_fall(monkeypatch):
    """Found by the chaos soak (issue 23): the service's retries were 8 attempts with full-jitter
    backoff, ~20 s on average but as little as a few seconds, so a job writing while the service
    restarted (models loading: 10-20 s on this machine) failed about half the time. Now a call is
    retried for at least a minute whatever the jitter draws."""
    from sparsehybrid.connectors import retry
    from sparsehybrid.connectors.service_store import RESTART_POLICY

    now = [0.0]
    monkeypatch.setattr(retry.random, "uniform", lambda low, high: low + (high - low) * 0.1)  # unlucky draws

    def write():
        if now[0] < 45:  # the service is back 45 s after the kill
            raise ConnectionRefusedError("connection refused")
        return "written"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    result = call_with_retries(
        write,
        is_transient=lambda exc: isinstance(exc, ConnectionError),
        where="qdrant-edge://idx",
        policy=RESTART_POLICY,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert result == "written" and 45 <= now[0] < 60
