"""The command line, driven as a user would (Typer's runner, real store, bundled model)."""

import json
import re

import pytest
from typer.testing import CliRunner

from sparsehybrid.cli import app

runner = CliRunner()


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    rows = [
        {
            "_id": "fd",
            "title": "Funded depreciation",
            "text": "Funded depreciation sets aside cash reserves to replace worn assets.",
            "lang": "en",
        },
        {
            "_id": "wing",
            "title": "Wings",
            "text": "Swept wings delay compressibility effects at transonic speeds.",
            "lang": "en",
        },
        {"_id": "ko", "title": "한국어", "text": "감가상각 적립금은 자산 교체를 위한 현금 준비금이다.", "lang": "ko"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{not json\n", encoding="utf-8")
    return path


def test_index_search_info_roundtrip(corpus, tmp_path):
    store = f"qdrant-edge://{tmp_path}/idx"
    result = runner.invoke(app, ["index", str(corpus), "--store", store, "--dense-model", "none"])
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output and "malformed JSON" in result.output  # the bad line is named, the rest indexed

    result = runner.invoke(app, ["search", "what is funded depreciation", "--store", store, "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert hits[0]["doc_id"] == "fd"
    assert {e["retriever"] for e in hits[0]["explanation"]["retrievers"]} == {"sparse", "bm25"}
    assert hits[0]["explanation"]["sparse_tokens"]

    result = runner.invoke(app, ["search", "transonic wings", "--store", store, "--json", "--filter", '{"lang": "ko"}'])
    assert result.exit_code == 0 and [h["doc_id"] for h in json.loads(result.stdout)] == ["ko"]

    result = runner.invoke(app, ["info", "--store", store])
    assert result.exit_code == 0
    assert "splade-tiny" in result.output and "lang:keyword" in result.output

    again = runner.invoke(app, ["index", str(corpus), "--store", store, "--dense-model", "none"])
    assert again.exit_code == 0
    # seen 3, added 0, updated 0, unchanged 3: nothing re-encoded
    assert re.search(r"│\s*3\s*│\s*0\s*│\s*0\s*│\s*3\s*│", again.stdout), again.stdout


def test_clear_errors(corpus, tmp_path):
    store = f"qdrant-edge://{tmp_path}/idx"
    result = runner.invoke(app, ["search", "x", "--store", store])
    assert result.exit_code == 1 and "holds no collection yet" in result.output
    result = runner.invoke(app, ["index", str(tmp_path / "missing.jsonl"), "--store", store])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["search", "x", "--store", "nosuch://x"])
    assert result.exit_code == 1 and "unknown store scheme" in result.output
    runner.invoke(app, ["index", str(corpus), "--store", store, "--dense-model", "none"])
    result = runner.invoke(app, ["search", "x", "--store", store, "--filter", "{bad"])
    assert result.exit_code == 1 and "not valid JSON" in result.output
    result = runner.invoke(app, ["search", "x", "--store", store, "--rerank"])
    assert result.exit_code == 1 and "--reranker" in result.output


def test_quickstart_runs_on_stdlib_docstrings(tmp_path):
    result = runner.invoke(
        app, ["quickstart", "--store", f"qdrant-edge://{tmp_path}/qs", "--limit", "60", "--no-dense"]
    )
    assert result.exit_code == 0, result.output
    assert "quickstart done" in result.output
    assert "60 docstrings" in result.output
