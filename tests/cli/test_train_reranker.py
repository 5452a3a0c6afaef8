"""`sparsehybrid train-reranker`: clear one-line errors, and a small offline run end to end
(tiny random base weights and BM25 mining: plumbing, not quality)."""

import json

import pytest
from typer.testing import CliRunner

from sparsehybrid.cli import app
from tests.support import tiny_cross_encoder_dir, write_topic_beir

runner = CliRunner()


def test_not_a_beir_folder_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["train-reranker", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "is not a BEIR folder (no corpus.jsonl)" in result.output
    assert "Traceback" not in result.output


def test_unknown_held_out_collection_is_named(tmp_path):
    data = write_topic_beir(tmp_path / "alpha")
    result = runner.invoke(app, ["train-reranker", str(data), "--out", str(tmp_path / "m"), "--held-out", "beta"])
    assert result.exit_code == 1
    assert "held_out: beta is not among the datasets (alpha)" in " ".join(result.output.split())


@pytest.mark.slow
def test_trains_offline_and_writes_the_model_card(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPARSEHYBRID_CACHE", str(tmp_path / "cache"))
    base = tiny_cross_encoder_dir(tmp_path / "base")
    data = write_topic_beir(tmp_path / "alpha", topics=10)
    out = tmp_path / "model"
    args = ["train-reranker", str(data), "--out", str(out), "--base", base, "--max-steps", "3", "--batch-size", "4"]
    args += ["--sparse-model", "none", "--eval-fraction", "0.3", "--max-length", "64", "--seed", "7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "reranker trained" in result.output and "evaluation queries" in result.output
    report = json.loads((out / "training.json").read_text())
    split = report["splits"]["alpha"]
    assert split["eval"] and set(split["eval"]).isdisjoint(split["train"])
    assert report["config"]["seed"] == 7 and report["training"]["steps"] == 3
    assert "# Cross-encoder reranker trained by `sparsehybrid train-reranker`" in (out / "README.md").read_text()
