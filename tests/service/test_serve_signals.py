"""Ctrl-C and SIGTERM of `sparsehybrid serve`: a prompt exit with the shell's code for the signal
(130, 143; SIGTERM exited 0, and a stopped service spent 2-3 s in the interpreter's teardown of
its models), the service file withdrawn and the store closed (issue 23)."""

from __future__ import annotations

import signal
import time

import pytest

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.service import discovery
from tests.service.test_service_indexing import start_service
from tests.support import as_documents, cranfield_rows, free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_service_promptly_with_its_exit_code(tmp_path, cranfield, signum, code):
    path, log = tmp_path / "idx", tmp_path / "serve.log"
    store = QdrantEdgeStore(path)
    Indexer(store, None, None, bm25=True).index(as_documents(cranfield_rows(cranfield, 10)))  # no model to load
    store.close()
    proc = start_service(path, free_port(), log)
    try:
        t0 = time.monotonic()
        proc.send_signal(signum)
        proc.wait(60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, log.read_text()
    assert took < 10, took  # about 0.4 s measured; the bound catches a service that ignores the signal
    assert "Traceback" not in log.read_text()
    assert not (path / discovery.SERVICE_FILE).exists()
    reopened = QdrantEdgeStore(path)  # closed on the way out: the lock is free
    try:
        assert len(reopened.document_states()) == 10
    finally:
        reopened.close()
