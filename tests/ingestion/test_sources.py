"""Source readers: CSV/TSV, Parquet and text/Markdown folders yield the same Documents as JSONL,
and name each bad record and field instead of stopping."""

from __future__ import annotations

import json

import pytest

from sparsehybrid.ingestion.sources import FieldMap, ParquetSource, Rejected, open_source
from sparsehybrid.types import Document

ROWS = [
    {"doc_id": 1, "body": "Swept wings delay compressibility effects.", "heading": "Wings", "lang": "en"},
    {"doc_id": 2, "body": "Funded depreciation sets aside cash reserves.", "heading": "Funds", "lang": "en"},
    {"doc_id": 3, "body": "감가상각 적립금은 현금 준비금이다.", "heading": "한국어", "lang": "ko"},
]
FIELDS = FieldMap(id="doc_id", text="body", title="heading")


def docs(items):
    return [i for i in items if isinstance(i, Document)]


def as_tuples(items):
    return [(d.id, d.text, d.title, d.metadata) for d in docs(items)]


def expected():
    return [(str(r["doc_id"]), r["body"], r["heading"], {"lang": r["lang"]}) for r in ROWS]


def test_csv_tsv_parquet_and_jsonl_read_the_same_documents(tmp_path):
    import pandas as pd

    df = pd.DataFrame(ROWS)
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_csv(tmp_path / "c.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "c.parquet", index=False)
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    for name in ("c.csv", "c.tsv", "c.parquet", "c.jsonl"):
        assert as_tuples(open_source(tmp_path / name, FIELDS)) == expected(), name


def test_parquet_is_streamed_in_row_batches(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 2500
    table = pa.table(
        {
            "id": list(range(n)),
            "text": [f"document number {i}" for i in range(n)],
            "year": [1990 + i % 30 for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=500)
    source = ParquetSource(tmp_path / "big.parquet", FieldMap(title=None), batch_rows=100)
    it = iter(source)
    first = next(it)  # available before the rest of the file is read
    assert (first.id, first.text, first.metadata) == ("0", "document number 0", {"year": 1990})
    rest = list(it)
    assert len(rest) == n - 1 and rest[-1].id == str(n - 1)


def test_parquet_bad_rows_are_rejected_by_row_number(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", None, "c"], "text": ["x", "y", None]}), tmp_path / "p.parquet")
    items = list(open_source(tmp_path / "p.parquet"))
    assert [i.id for i in docs(items)] == ["a"]
    assert [(r.record, r.field) for r in items if isinstance(r, Rejected)] == [("p.parquet:row 2", "id"), ("c", "text")]


def test_csv_rows_with_wrong_cell_counts_or_empty_text_are_named(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text,title\n1,good text,T\n2,too,many,cells\n3,,\n4\n5,also good,\n", encoding="utf-8")
    items = list(open_source(path))
    assert [d.id for d in docs(items)] == ["1", "5"]
    rejected = [(r.record, r.field) for r in items if isinstance(r, Rejected)]
    assert rejected == [("c.csv:3", "(row)"), ("3", "text"), ("c.csv:5", "(row)")]


def test_text_folder_ids_are_relative_paths_and_titles_the_first_heading(tmp_path):
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "install.md").write_text(
        "```\n# not a heading\n```\nintro\n\n## Installing the tool\n\npip install it\n", encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("plain notes about wings\n", encoding="utf-8")
    (tmp_path / "empty.md").write_text("   \n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    items = list(open_source(tmp_path))
    got = {d.id: (d.title, d.metadata) for d in docs(items)}
    assert got == {
        "guides/install.md": ("Installing the tool", {"extension": "md"}),
        "notes.txt": ("notes", {"extension": "txt"}),
    }
    assert "pip install it" in next(d.text for d in docs(items) if d.id == "guides/install.md")
    rejected = sorted((r.record, r.field) for r in items if isinstance(r, Rejected))
    assert rejected == [("empty.md", "text"), ("latin1.txt", "text")]


def test_unknown_formats_list_the_known_ones(tmp_path):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match=r"unknown source format 'xml'.*csv.*dir.*parquet"):
        open_source(tmp_path / "x.xml")
