"""A job whose documents are written does not fail on its report (issue 23)."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("prefect")

from sparsehybrid.connectors import open_store
from sparsehybrid.pipelines import flows
from sparsehybrid.pipelines.config import PipelineConfig
from tests.support import write_jsonl

pytestmark = pytest.mark.slow  # a Prefect API


def test_an_artifact_the_api_refuses_is_a_warning_and_the_run_succeeds(prefect_api, tmp_path, monkeypatch, caplog):
    def api_gone(**_: object) -> None:
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(flows, "create_markdown_artifact", api_gone)
    rows = [{"_id": str(i), "text": f"document {i} about wings and flutter {i}"} for i in range(12)]
    cfg = PipelineConfig.parse(
        {
            "source": {"path": str(write_jsonl(tmp_path / "docs.jsonl", rows))},
            "store": f"qdrant-edge://{tmp_path / 'idx'}",
            "models": {"sparse": None, "dense": None, "bm25": True},
        }
    )
    summary = flows.run_pipeline(cfg)
    assert summary["added"] == 12
    assert summary["artifact_error"].startswith("ConnectError")
    assert "the run summary artifact was not saved (ConnectError" in caplog.text
    with open_store(cfg.store_url()) as store:
        assert store.count() == 12
