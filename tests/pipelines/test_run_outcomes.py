"""A run says how it went: one that rejects everything (or too much) fails, in the CLI's exit code,
its summary and its Prefect artifact; each job keeps its own artifact."""

from __future__ import annotations

import re
import subprocess

from sparsehybrid.pipelines.config import PipelineConfig
from sparsehybrid.pipelines.flows import artifact_key
from tests.conftest import cli_env, index_command
from tests.support import write_jsonl


def _latest_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1, sort="CREATED_DESC"
        )
    return str(latest.data)


def test_a_run_that_rejects_most_records_fails_and_says_so(tmp_path, prefect_api):
    rows = [{"_id": "ok", "text": "fine"}] + [{"_id": f"bad{i}", "text": "   "} for i in range(3)]
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    idx = tmp_path / "idx"
    cmd = index_command(src, idx, "--sparse-model", "none", "--dense-model", "none")
    env = cli_env(prefect_api)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "3 of 4 records were rejected (75%, more than the 50% allowed)" in out.stderr
    assert re.search(r"│\s*1\s*│\s*1\s*│", out.stdout)  # the summary is still shown: 1 seen, 1 added
    cfg = PipelineConfig.parse({"source": {"path": str(src)}, "store": f"qdrant-edge://{idx}"})
    assert "**Run failed:** 3 of 4 records were rejected" in _latest_artifact(artifact_key(cfg))


def test_every_job_has_its_own_artifact_key():
    def key(**kw):
        return artifact_key(PipelineConfig.parse({"source": {"path": "c.jsonl"}, **kw}))

    a, b = key(store="qdrant-edge://./a"), key(store="qdrant-edge://./b")
    assert a != b and key(store="qdrant-edge://./a") == a  # stable per job
    assert key(store="opensearch://u:secret@h:9200/i") == key(store="opensearch://h:9200/i")  # no secret in it
    assert key(name="Nightly Docs!", store="qdrant-edge://./a") != a
    for k in (a, b, key(name="Nightly Docs!")):
        assert re.fullmatch(r"[a-z0-9-]+", k), k  # what Prefect accepts
