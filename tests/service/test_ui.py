"""The relevance page's judgements (``sparsehybrid serve --qrels``) without a browser: what is
read, and a bad file stopping the service before it starts, in one line naming file and line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparsehybrid.cli import app
from sparsehybrid.service.ui import Judgements


def beir_folder(tmp_path, qrels_text: str, queries: dict[str, str] | None = None):
    (tmp_path / "qrels").mkdir(parents=True)
    path = tmp_path / "qrels" / "test.tsv"
    path.write_text(qrels_text)
    if queries is not None:
        (tmp_path / "queries.jsonl").write_text(
            "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
        )
    return path


def test_qrels_with_the_folders_query_texts(tmp_path):
    path = beir_folder(
        tmp_path,
        "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n2\td3\t1\n",
        {"1": "wing lift", "2": "drag", "3": "unjudged"},
    )
    judged = Judgements.load(path)
    assert judged.qrels == {"1": {"d1": 2, "d2": 0}, "2": {"d3": 1}}
    assert judged.queries == {"1": "wing lift", "2": "drag"}  # only the judged ones are offered
    assert Judgements.load(beir_folder(tmp_path / "bare", "query-id\tcorpus-id\tscore\n1\td1\t1\n")).queries == {}


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("1\td1\t2\n", "test.tsv:1: expected the header"),
        ("query-id\tcorpus-id\tscore\n1\td1\thigh\n", "test.tsv:2 (query 1, document d1)"),
    ],
)
def test_a_bad_qrels_file_stops_serve_before_it_starts(tmp_path, qrels, message):
    path = beir_folder(tmp_path / "bad", qrels)
    result = CliRunner().invoke(app, ["serve", "--store", f"qdrant-edge://{tmp_path / 'idx'}", "--qrels", str(path)])
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "idx").exists()  # nothing was opened or created
