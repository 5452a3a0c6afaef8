"""SIGTERM in the instants Prefect's engine holds it (as the flow run starts or ends, outside the
flow's body) raises Prefect's TerminationSignal: the index command ends stopped, as for any other
moment (issue 23), instead of a traceback and exit 1."""

from __future__ import annotations

import signal

import pytest
from prefect.exceptions import TerminationSignal
from prefect.settings import PREFECT_API_URL, temporary_settings

from sparsehybrid.cli.indexing import run_interactive
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import IndexInterrupted
from sparsehybrid.pipelines import flows
from sparsehybrid.pipelines.config import PipelineConfig
from sparsehybrid.pipelines.runtime import StopRequest
from tests.support import cranfield_rows, write_jsonl


def test_a_termination_signal_from_prefects_engine_is_a_stop(tmp_path, cranfield, monkeypatch):
    src = write_jsonl(tmp_path / "c.jsonl", cranfield_rows(cranfield, 3))
    cfg = PipelineConfig.parse({"source": {"path": str(src)}, "store": f"qdrant-edge://{tmp_path / 'idx'}"})

    def terminated(*args, **kwargs):
        raise TerminationSignal(signal.SIGTERM)

    monkeypatch.setattr(flows, "run_pipeline", terminated)
    sink = QdrantEdgeStore(tmp_path / "idx")  # no collection yet: the run has work to do
    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),  # no API started
            pytest.raises(IndexInterrupted, match="run the same command again to resume"),
        ):
            run_interactive(cfg, sink, StopRequest())
    finally:
        sink.close()
