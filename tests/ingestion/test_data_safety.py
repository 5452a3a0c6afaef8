"""Data safety: a sync never deletes what it could not read, a failed write is repaired by the
next run, one unstorable record never stops the rest, and byte-order marks are not data."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from sparsehybrid import Indexer, open_store
from sparsehybrid.connectors.base import EncoderMismatchError
from sparsehybrid.ingestion.dead_letter import read_dead_letter
from sparsehybrid.ingestion.indexing import MassDeleteError
from sparsehybrid.ingestion.sources import open_source
from tests.conftest import cli_env, index_command
from tests.support import as_documents, cranfield_rows, write_jsonl


def _states(path: Path) -> dict[str, tuple[str, int]]:
    store = open_store(f"qdrant-edge://{path}")
    try:
        return store.document_states()
    finally:
        store.close()


def test_sync_keeps_documents_whose_records_are_present_but_rejected(tmp_path, cranfield):
    rows = cranfield_rows(cranfield, 10)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    idx = tmp_path / "idx"
    store = open_store(f"qdrant-edge://{idx}")
    Indexer(store, bm25=True).index(open_source(src))
    broken = [dict(r, text=None) if i == 3 else r for i, r in enumerate(rows)]
    stats = Indexer(store, bm25=True).index(open_source(write_jsonl(src, broken)), sync=True)
    assert stats.deleted == 0 and len(stats.rejected) == 1
    assert rows[3]["_id"] in store.document_states()  # the good stored version stays
    store.close()


@pytest.mark.parametrize("source_rows", [[], "all rejected"], ids=["empty source", "every record rejected"])
def test_sync_refuses_to_empty_the_collection_from_a_source_it_could_not_read(tmp_path, cranfield, source_rows):
    rows = cranfield_rows(cranfield, 10)
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, bm25=True).index(as_documents(rows))
    bad = [] if source_rows == [] else [{"text": "no id here"}] * 3
    src = write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(MassDeleteError, match="would delete 10 of 10 stored documents"):
        Indexer(store, bm25=True).index(open_source(src), sync=True)
    assert len(store.document_states()) == 10
    stats = Indexer(store, bm25=True).index(open_source(src), sync=True, allow_mass_delete=True)
    assert stats.deleted == 10
    store.close()


def test_sync_refuses_to_delete_more_than_half_unless_told(tmp_path, cranfield):
    rows = cranfield_rows(cranfield, 10)
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, bm25=True).index(as_documents(rows))
    with pytest.raises(MassDeleteError, match=r"delete 7 of 10 stored documents \(70%"):
        Indexer(store, bm25=True).index(as_documents(rows[:3]), sync=True)
    assert Indexer(store, bm25=True).index(as_documents(rows[:6]), sync=True).deleted == 4  # 40%: fine
    store.close()


def test_cli_sync_refusal_is_one_line_and_names_the_count(tmp_path, cranfield, prefect_api):
    rows = cranfield_rows(cranfield, 6)
    idx = tmp_path / "idx"
    store = open_store(f"qdrant-edge://{idx}")
    Indexer(store, bm25=True).index(as_documents(rows))
    store.close()
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    cmd = index_command(empty, idx, "--sync")
    env = cli_env(prefect_api)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "would delete 6 of 6 stored documents" in out.stderr and "--allow-mass-delete" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(_states(idx)) == 6


def test_a_write_that_fails_part_way_is_repaired_by_the_next_run(tmp_path, tf_encoder):
    docs = as_documents(
        [{"_id": f"d{i}", "text": " ".join(["wing flutter at transonic speed"] * 120) + f" {i}"} for i in range(4)]
    )
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    real_upsert = store._upsert

    def dies_half_way(records):
        real_upsert(records[: len(records) // 2])
        raise OSError("disk went away")

    store._upsert = dies_half_way
    with pytest.raises(OSError):
        Indexer(store, tf_encoder, bm25=True, batch_size=4).index(docs)
    del store._upsert
    again = Indexer(store, tf_encoder, bm25=True, batch_size=4).index(docs)
    assert again.unchanged == 0  # no chunk 0 carried the new hash: every document is redone
    n_chunks = {doc_id: n for doc_id, (_, n) in store.document_states().items()}
    assert store.count() == sum(n_chunks.values()) and all(n > 1 for n in n_chunks.values())
    store.close()


def test_encoder_mismatch_is_refused_before_anything_is_written(tmp_path, tf_encoder, cranfield):
    rows = cranfield_rows(cranfield, 5)
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
    edited = [dict(r, text=r["text"] + " revised") for r in rows]
    before = store.document_states()
    with pytest.raises(EncoderMismatchError, match="sparse vectors from test/term-frequency"):
        Indexer(store, None, bm25=True).index(as_documents(edited))
    assert store.document_states() == before
    store.close()


def test_a_first_run_that_writes_nothing_does_not_fix_bm25_length_normalisation(tmp_path, cranfield):
    idx = tmp_path / "idx"
    store = open_store(f"qdrant-edge://{idx}")
    Indexer(store, bm25=True).index(open_source(write_jsonl(tmp_path / "bad.jsonl", [{"text": "no id"}])))
    assert store.schema is None  # nothing to write, nothing created
    rows = cranfield_rows(cranfield, 40)
    Indexer(store, bm25=True).index(as_documents(rows))
    fresh = open_store(f"qdrant-edge://{tmp_path}/fresh")
    Indexer(fresh, bm25=True).index(as_documents(rows))
    assert store.schema.bm25_avg_len == pytest.approx(fresh.schema.bm25_avg_len) != 256.0
    store.close()
    fresh.close()


def test_unstorable_records_are_rejected_by_position_and_the_rest_indexed(tmp_path):
    deep = '{"_id": "deep", "text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        json.dumps({"_id": "ok1", "text": "a fine record about wings"}),
        '{"_id": "surrogate", "text": "broken \\ud800 text"}',
        deep,
        '{"_id": "meta-surrogate", "text": "fine text", "tag": "\\udfff"}',
        json.dumps({"_id": "ok2", "text": "another fine record about flutter"}),
    ]
    src = tmp_path / "c.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    dead = tmp_path / "dead.jsonl"
    stats = Indexer(store, bm25=True).index(open_source(src), dead_letter=dead)
    assert set(store.document_states()) == {"ok1", "ok2"}
    by_record = {r.record: r for r in stats.rejected}
    assert by_record["surrogate"].field == "text" and "surrogate" in by_record["surrogate"].reason
    assert by_record["meta-surrogate"].field == "metadata"
    assert by_record["c.jsonl:3"].reason == "JSON nested too deeply to read"
    rows = read_dead_letter(dead)
    assert {r["record"] for r in rows} == {"surrogate", "c.jsonl:3", "meta-surrogate"}
    replay = {r["record"]: r["source"] for r in rows}
    assert json.loads(replay["surrogate"])["_id"] == "surrogate"  # the record itself, ready to fix
    store.close()


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + b'{"_id": "1", "text": "first"}\n{"_id": "2", "text": "second"}\n')
    csv_file = tmp_path / "bom.csv"
    csv_file.write_bytes(b"\xef\xbb\xbfid,text\n1,first\n2,second\n")
    text_dir = tmp_path / "notes"
    text_dir.mkdir()
    (text_dir / "a.md").write_bytes("\ufeff# Title\nbody".encode())
    for path in (jsonl, csv_file):
        items = list(open_source(path))
        assert [getattr(i, "id", None) for i in items] == ["1", "2"], items
    (doc,) = open_source(text_dir)
    assert doc.title == "Title"


def test_dead_letter_lines_hold_the_rejected_record_for_replay(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "   "}\n{"_id": "b", "text": "kept"}\n', encoding="utf-8")
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, bm25=True).index(open_source(src), dead_letter=tmp_path / "dead.jsonl")
    (row,) = read_dead_letter(tmp_path / "dead.jsonl")
    fixed = dict(json.loads(row["source"]), text="now with text")
    replay = write_jsonl(tmp_path / "fixed.jsonl", [fixed])
    assert Indexer(store, bm25=True).index(open_source(replay)).added == 1
    assert set(store.document_states()) == {"a", "b"}
    store.close()


def test_index_without_model_options_uses_the_collections_models(tmp_path, cranfield, prefect_api):
    rows = cranfield_rows(cranfield, 6)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    idx = tmp_path / "idx"
    first = subprocess.run(
        index_command(src, idx, "--sparse-model", "none", "--dense-model", "none"),
        env=cli_env(prefect_api),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    write_jsonl(src, [dict(rows[0], text="an edited first document"), *rows[1:]])
    # No model options: the recorded ones (BM25 only) are used, not the defaults, which would be
    # refused as a mismatch ("the collection has no sparse vectors").
    again = subprocess.run(
        index_command(src, idx), env=cli_env(prefect_api), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert re.search(r"│\s*6\s*│\s*0\s*│\s*1\s*│\s*5\s*│", again.stdout), again.stdout  # 1 updated, 5 unchanged


def test_only_transient_write_failures_are_retried():
    from sparsehybrid.connectors.base import StoreError, StoreUnavailableError
    from sparsehybrid.pipelines.flows import _retry_if_transient

    class Failed:
        def __init__(self, exc):
            self.exc = exc

        def result(self, raise_on_failure=True):
            return self.exc

    retried = {
        type(exc).__name__: _retry_if_transient(None, None, Failed(exc))
        for exc in (
            StoreUnavailableError("down"),
            ConnectionResetError("reset"),
            StoreError("dense vector must have 384 dims"),
            EncoderMismatchError("mismatch"),
            ValueError("bad"),
            PermissionError("read-only"),
        )
    }
    assert retried == {
        "StoreUnavailableError": True,
        "ConnectionResetError": True,
        "StoreError": False,
        "EncoderMismatchError": False,
        "ValueError": False,
        "PermissionError": False,
    }
