"""The Prefect ingestion flow against the embedded store: incremental, sync, resume, chunking, Dask.

One Prefect API (``prefect_test_harness``) serves the whole module: it takes ~15 s to start.
Plumbing tests encode with a tiny random-weight BERT MLM (a real SparseEncoder, built in a temp
dir) so that they test the flow, not the CPU; the search-quality test uses SPLADE-tiny.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("prefect")
pytest.importorskip("prefect_dask")

from sparsehybrid.connectors import open_store
from sparsehybrid.pipelines.config import PipelineConfig
from sparsehybrid.pipelines.flows import artifact_key, run_pipeline
from sparsehybrid.types import point_id
from tests.conftest import index_command

pytestmark = pytest.mark.slow  # real models and a Prefect API in every test


@pytest.fixture(scope="module")
def tiny_model(tiny_splade_dir: str) -> str:
    """A random-weight BERT MLM with SPLADE-tiny's tokenizer (tests/conftest.py)."""
    return tiny_splade_dir


def cranfield_docs(cranfield: Path, n: int, skip: int = 0, words: int | None = 60) -> list[dict]:
    """Cranfield documents, texts cut to ``words`` words (still two or three 64-token chunks)."""
    out = []
    with open(cranfield / "corpus.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= skip + n:
                break
            if i >= skip:
                row = json.loads(line)
                if words:
                    row["text"] = " ".join(row["text"].split()[:words])
                out.append(row)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(source: Path, store: Path, model: str, **kw) -> PipelineConfig:
    data = {
        "source": {"path": str(source)},
        "store": f"qdrant-edge://{store}",
        "models": {"sparse": model, "dense": None, "max_length": kw.pop("max_length", 64)},
        "batch_size": kw.pop("batch_size", 8),
    }
    data.update(kw)
    return PipelineConfig.parse(data)


def stored_points(store_path: Path) -> list[dict]:
    with open_store(f"qdrant-edge://{store_path}") as st:
        return [p.payload for p in st.iter_points()]


def doc_chunks(payloads: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p in payloads:
        out.setdefault(p["doc_id"], []).append(p["chunk"])
    return {k: sorted(v) for k, v in out.items()}


def assert_exactly(payloads: list[dict], ids: set[str]) -> None:
    """Each document once: chunks 0..n-1 exactly, matching the n_chunks it records."""
    chunks = doc_chunks(payloads)
    assert set(chunks) == ids
    n_chunks = {p["doc_id"]: p["n_chunks"] for p in payloads if p["chunk"] == 0}
    for doc, got in chunks.items():
        assert got == list(range(n_chunks[doc])), doc


def test_incremental_rerun_encodes_nothing_and_publishes_a_summary(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 40)
    cfg = config(write_jsonl(tmp_path / "c.jsonl", rows), tmp_path / "idx", tiny_model)

    first = run_pipeline(cfg)
    assert (first["seen"], first["added"], first["updated"], first["unchanged"]) == (40, 40, 0, 0)
    assert first["chunks"] > 40  # 64-token windows split most Cranfield abstracts
    payloads = stored_points(tmp_path / "idx")
    assert_exactly(payloads, {r["_id"] for r in rows})
    assert len(payloads) == first["chunks"]

    second = run_pipeline(cfg)
    assert (second["seen"], second["added"], second["updated"], second["unchanged"], second["chunks"]) == (
        40,
        0,
        0,
        40,
        0,
    )
    assert len(stored_points(tmp_path / "idx")) == first["chunks"]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(cfg)])),
            limit=1,
            sort="CREATED_DESC",
        )
    md = latest[0].data
    assert "| documents seen | 40 |" in md and "| unchanged | 40 |" in md and "| added | 0 |" in md
    assert "Time per stage" in md


def test_edited_document_is_reencoded_and_its_old_vectors_are_gone(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 24)
    src = tmp_path / "c.jsonl"
    cfg = config(write_jsonl(src, rows), tmp_path / "idx", tiny_model)
    run_pipeline(cfg)
    target = rows[3]["_id"]
    before = doc_chunks(stored_points(tmp_path / "idx"))[target]
    assert len(before) > 1

    rows[3] = dict(rows[3], text="zeppelin mooring masts in gusty crosswinds")  # now one short chunk
    write_jsonl(src, rows)
    out = run_pipeline(cfg)
    assert (out["updated"], out["unchanged"], out["added"]) == (1, 23, 0)

    payloads = stored_points(tmp_path / "idx")
    assert_exactly(payloads, {r["_id"] for r in rows})
    mine = [p for p in payloads if p["doc_id"] == target]
    assert [p["chunk"] for p in mine] == [0]  # the surplus chunks of the old text are deleted
    assert "zeppelin mooring masts" in mine[0]["text"]

    from sparsehybrid.encoders.sparse import SparseEncoder

    with open_store(f"qdrant-edge://{tmp_path / 'idx'}") as st:
        (point,) = st.get([point_id(target, 0)], with_sparse=True)
        expected = SparseEncoder(tiny_model, max_length=64).encode_document([f"{rows[3]['title']} {rows[3]['text']}"])[
            0
        ]
        assert point.sparse.as_dict() == pytest.approx(expected.as_dict(), rel=1e-4, abs=1e-5)
        assert st.get([point_id(target, i) for i in before[1:]]) == []
        hits = st.search_bm25("zeppelin mooring masts", 3)
        assert hits[0].doc_id == target


def test_sync_deletes_vanished_documents_only_when_asked(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 20)
    src = tmp_path / "c.jsonl"
    run_pipeline(config(write_jsonl(src, rows), tmp_path / "idx", tiny_model))
    kept = rows[5:]
    write_jsonl(src, kept)

    plain = run_pipeline(config(src, tmp_path / "idx", tiny_model))
    assert plain["deleted"] == 0 and len(doc_chunks(stored_points(tmp_path / "idx"))) == 20

    synced = run_pipeline(config(src, tmp_path / "idx", tiny_model, sync=True))
    assert (synced["deleted"], synced["unchanged"], synced["added"]) == (5, 15, 0)
    assert_exactly(stored_points(tmp_path / "idx"), {r["_id"] for r in kept})


def test_rejected_records_go_to_the_dead_letter_file(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 6)
    src = tmp_path / "c.jsonl"
    src.write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"_id": "empty", "text": "  "}\n{oops\n', encoding="utf-8"
    )
    out = run_pipeline(config(src, tmp_path / "idx", tiny_model, dead_letter=str(tmp_path / "dead.jsonl")))
    assert (out["seen"], out["rejected"]) == (6, 2)
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["record"], d["field"]) for d in dead] == [("empty", "text"), ("c.jsonl:8", "(line)")]
    assert "malformed JSON" in dead[1]["reason"] and dead[0]["flow_run"]


def _search_signature(store_path: Path, queries: list[str], n_docs: int) -> list:
    """Every document's sparse and BM25 score per query (a ranking up to the order of ties)."""
    from sparsehybrid.search import searcher_for_store as open_searcher

    with open_store(f"qdrant-edge://{store_path}") as st:
        searcher = open_searcher(st)
        return [
            {h.doc_id: round(h.score, 4) for h in searcher.search(q, top_k=n_docs, mode=mode, candidates=n_docs * 20)}
            for q in queries
            for mode in ("sparse", "bm25")
        ]


def test_run_killed_with_sigkill_resumes_without_duplicates(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 60)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    idx = tmp_path / "idx"
    cmd = index_command(
        src, idx, "--sparse-model", tiny_model, "--dense-model", "none", "--max-length", "64", "--batch-size", "3"
    )
    env = dict(os.environ, PREFECT_API_URL=prefect_api, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="200")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    written, log = [], []
    try:
        while len(written) < 3:
            line = lines.get(timeout=240)
            log.append(line)
            if m := re.search(r"batch (\d+)/(\d+) written: (\d+) documents", line):
                written.append(int(m.group(3)))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "".join(log)
    assert sum(written) < 60  # killed mid-way: 60 docs make 20 batches

    resumed = run_pipeline(config(src, idx, tiny_model, batch_size=3))
    assert resumed["seen"] == 60
    assert resumed["unchanged"] >= sum(written)  # finished batches are not encoded again
    assert resumed["added"] + resumed["updated"] + resumed["unchanged"] == 60
    payloads = stored_points(idx)
    assert_exactly(payloads, {r["_id"] for r in rows})

    clean = tmp_path / "clean"
    run_pipeline(config(src, clean, tiny_model, batch_size=3))
    assert sorted((p["doc_id"], p["chunk"], p["content_hash"]) for p in payloads) == sorted(
        (p["doc_id"], p["chunk"], p["content_hash"]) for p in stored_points(clean)
    )
    queries = [
        "flow over a wing in a slipstream",
        "heat transfer in hypersonic boundary layers",
        "buckling of cylindrical shells",
    ]
    signature = _search_signature(clean, queries, 60)
    assert all(signature) and len(signature[0]) == 60  # sparse scores every document
    assert _search_signature(idx, queries, 60) == signature


def test_long_document_is_chunked_and_found_by_a_phrase_from_its_end(prefect_api, cranfield, tmp_path):
    rows = cranfield_docs(cranfield, 30, words=None)
    body = " ".join(r["text"] for r in cranfield_docs(cranfield, 8, skip=100, words=None))
    ending = "the helicopter rotor blade flapping produced strong vortex noise during descent"
    long_doc = {"_id": "long", "title": "collected abstracts", "text": body + " " + ending}
    src = write_jsonl(tmp_path / "c.jsonl", [*rows, long_doc])
    out = run_pipeline(config(src, tmp_path / "idx", "splade-tiny", max_length=128, batch_size=16))
    assert out["added"] == 31

    from sparsehybrid.search import searcher_for_store as open_searcher

    with open_store(f"qdrant-edge://{tmp_path / 'idx'}") as st:
        n_chunks = [p.payload["n_chunks"] for p in st.iter_points() if p.payload["doc_id"] == "long"]
        assert len(n_chunks) == n_chunks[0] > 3
        hits = open_searcher(st).search("helicopter rotor blade flapping vortex noise", top_k=5, mode="sparse")
    assert hits[0].doc_id == "long"
    assert [h.doc_id for h in hits].count("long") == 1  # documents, not chunks
    assert hits[0].chunk == n_chunks[0] - 1 and hits[0].span[1] == len(long_doc["text"])
    assert ending in long_doc["text"][hits[0].span[0] : hits[0].span[1]]


def test_dask_runner_indexes_the_same_as_the_default_runner(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 24)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    default = run_pipeline(config(src, tmp_path / "default", tiny_model))
    dask = run_pipeline(
        config(src, tmp_path / "dask", tiny_model, dask={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    )
    keys = ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks", "batches")
    assert {k: dask[k] for k in keys} == {k: default[k] for k in keys}
    assert dask["encode_workers"] >= 1 and default["encode_workers"] == 1

    def content(path):
        return sorted((p["doc_id"], p["chunk"], p["start"], p["end"], p["content_hash"]) for p in stored_points(path))

    assert content(tmp_path / "dask") == content(tmp_path / "default")
    with (
        open_store(f"qdrant-edge://{tmp_path / 'dask'}") as a,
        open_store(f"qdrant-edge://{tmp_path / 'default'}") as b,
    ):
        ids = [point_id(r["_id"], 0) for r in rows[:5]]
        for pa, pb in zip(a.get(ids, with_sparse=True), b.get(ids, with_sparse=True)):
            assert pa.sparse.as_dict() == pytest.approx(pb.sparse.as_dict(), rel=1e-5, abs=1e-6)


def test_schedule_serves_a_cron_deployment_whose_runs_index(prefect_api, cranfield, tiny_model, tmp_path):
    rows = cranfield_docs(cranfield, 6)
    write_jsonl(tmp_path / "c.jsonl", rows)
    (tmp_path / "pipeline.yaml").write_text(
        f"source: {{path: c.jsonl}}\nstore: qdrant-edge://idx\nmodels: {{sparse: {tiny_model}, dense: null, max_length: 64}}\n"
    )
    env = dict(os.environ, PREFECT_API_URL=prefect_api, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [
        sys.executable,
        "-m",
        "sparsehybrid.cli",
        "schedule",
        "--config",
        str(tmp_path / "pipeline.yaml"),
        "--cron",
        "*/30 * * * *",
        "--name",
        "t",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        deadline = time.time() + 120
        with get_client(sync_client=True) as client:
            while True:
                try:
                    dep = client.read_deployment_by_name("sparsehybrid-index/t")
                    break
                except Exception:
                    assert time.time() < deadline and proc.poll() is None, (
                        proc.stdout.read() if proc.poll() is not None else "timeout"
                    )
                    time.sleep(1)
        assert [s.schedule.cron for s in dep.schedules] == ["*/30 * * * *"]
        assert dep.parameters == {"config": str(tmp_path / "pipeline.yaml")}
        run = run_deployment("sparsehybrid-index/t", timeout=180)  # what the schedule triggers
        assert run.state.is_completed(), run.state
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert_exactly(stored_points(tmp_path / "idx"), {r["_id"] for r in rows})
