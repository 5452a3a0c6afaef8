"""A record over the size limit is rejected by position, without being read whole; the rest is read."""

from __future__ import annotations

import json

import pytest

from sparsehybrid.ingestion.sources import Rejected, max_record_bytes, open_source

LIMIT_MB = 0.01  # 10,485 bytes


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_MAX_RECORD_MB", str(LIMIT_MB))


def kinds(items):
    return [(type(i).__name__, getattr(i, "id", None) or getattr(i, "record", None)) for i in items]


def test_jsonl_line_over_the_limit_is_rejected_by_line_and_the_next_lines_are_read(tmp_path):
    limit = max_record_bytes()
    path = tmp_path / "c.jsonl"
    rows = [
        {"_id": "a", "text": "small"},
        {"_id": "big", "text": "x" * (3 * limit)},
        {"_id": "edge", "text": "y" * (limit - 40)},  # just under the limit, newline included
        {"_id": "b", "text": "after"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = list(open_source(path))
    assert kinds(items) == [("Document", "a"), ("Rejected", "c.jsonl:2"), ("Document", "edge"), ("Document", "b")]
    rejected = items[1]
    assert isinstance(rejected, Rejected) and rejected.raw is None  # the huge line is not kept
    assert f"over the {limit:,}-byte record limit" in str(rejected) and "\n" not in str(rejected)
    assert f"is {len(json.dumps(rows[1])):,} bytes" in str(rejected)


def test_a_last_line_over_the_limit_without_newline_is_rejected(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"_id": "a", "text": "ok"}) + "\n" + json.dumps({"_id": "z", "text": "q" * 20000}))
    assert kinds(open_source(path)) == [("Document", "a"), ("Rejected", "c.jsonl:2")]


def test_csv_field_over_the_limit_is_rejected_and_later_rows_read(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text\na,small\nbig," + "x" * 20000 + "\nb,after\n")
    items = list(open_source(path))
    assert [type(i).__name__ for i in items] == ["Document", "Rejected", "Document"]
    assert "record limit" in str(items[1]) and items[2].id == "b"


def test_text_file_over_the_limit_is_rejected_by_name(tmp_path):
    (tmp_path / "small.txt").write_text("a short note")
    (tmp_path / "huge.txt").write_text("word " * 5000)
    items = list(open_source(tmp_path))
    assert kinds(items) == [("Rejected", "huge.txt"), ("Document", "small.txt")]


def test_parquet_row_over_the_limit_is_rejected_by_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"_id": ["a", "big", "b"], "text": ["x", "y" * 20000, "z"]}), path)
    assert kinds(open_source(path)) == [("Document", "a"), ("Rejected", "c.parquet:row 2"), ("Document", "b")]


def test_a_bad_limit_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_MAX_RECORD_MB", "lots")
    with pytest.raises(ValueError, match="SPARSEHYBRID_MAX_RECORD_MB must be a number"):
        max_record_bytes()
