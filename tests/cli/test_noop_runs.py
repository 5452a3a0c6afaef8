"""A re-run of an unchanged corpus skips what it does not need: the CLI touches neither Prefect
nor any model, and the flow (as a scheduled deployment runs it) loads no model."""

from __future__ import annotations

import os
import subprocess
import sys

from sparsehybrid import Indexer, open_store
from tests.support import as_documents, cranfield_rows, free_port, write_jsonl


def test_cli_rerun_of_an_unchanged_corpus_needs_no_prefect(tmp_path, cranfield):
    rows = cranfield_rows(cranfield, 20)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, bm25=True).index(as_documents(rows))
    store.close()
    env = dict(os.environ, PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api", COLUMNS="200")  # nothing there
    cmd = [sys.executable, "-m", "sparsehybrid.cli", "index", str(src), "--store", f"qdrant-edge://{tmp_path}/idx"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "20 documents: nothing changed since the last run" in out.stdout
    edited = write_jsonl(tmp_path / "c.jsonl", [dict(rows[0], text="changed"), *rows[1:]])
    out = subprocess.run([*cmd[:4], str(edited), *cmd[5:]], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0  # a change goes through the flow, which needs its (absent) API


def test_flow_rerun_of_an_unchanged_corpus_loads_no_model(tmp_path, cranfield, prefect_api, tiny_splade_dir):
    from sparsehybrid.pipelines.config import PipelineConfig
    from sparsehybrid.pipelines.flows import run_pipeline

    src = write_jsonl(tmp_path / "c.jsonl", cranfield_rows(cranfield, 10))
    cfg = PipelineConfig.parse(
        {
            "source": {"path": str(src)},
            "store": f"qdrant-edge://{tmp_path}/idx",
            "models": {"sparse": tiny_splade_dir, "dense": None, "max_length": 64},
        }
    )
    first = run_pipeline(cfg)
    assert "load models" in first["stages"]
    again = run_pipeline(cfg)
    assert again["unchanged"] == 10 and "load models" not in again["stages"]
