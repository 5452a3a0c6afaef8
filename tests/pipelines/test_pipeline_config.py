"""Pipeline config files: YAML and TOML load to the same config; mistakes are named precisely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsehybrid.pipelines.config import PipelineConfig, PipelineConfigError

REPO = Path(__file__).resolve().parents[2]

YAML = """
source:
  path: data/corpus.csv
  fields: {id: doc_id, text: body, title: null, metadata: [lang]}
store: qdrant-edge://index
models: {sparse: splade-tiny, dense: none, max_length: 128}
batch_size: 16
sync: true
schedule: {cron: "*/15 * * * *", timezone: Europe/Paris}
dask: {address: "tcp://scheduler:8786"}
dead_letter: out/rejected.jsonl
"""

TOML = """
store = "qdrant-edge://index"
batch_size = 16
sync = true
dead_letter = "out/rejected.jsonl"

[source]
path = "data/corpus.csv"
fields = { id = "doc_id", text = "body", metadata = ["lang"] }

[models]
sparse = "splade-tiny"
dense = "none"
max_length = 128

[schedule]
cron = "*/15 * * * *"
timezone = "Europe/Paris"

[dask]
address = "tcp://scheduler:8786"
"""


def test_yaml_and_toml_give_the_same_config_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "p.yaml").write_text(YAML)
    (tmp_path / "p.toml").write_text(TOML.replace('metadata = ["lang"] }', 'title = "", metadata = ["lang"] }'))
    y = PipelineConfig.from_file(tmp_path / "p.yaml")
    t = PipelineConfig.from_file(tmp_path / "p.toml")
    assert y.source.path == tmp_path / "data" / "corpus.csv"
    assert y.store == f"qdrant-edge://{tmp_path / 'index'}"
    assert y.dead_letter == tmp_path / "out" / "rejected.jsonl"
    assert y.models.dense is None and y.models.sparse == "splade-tiny"  # "none" means no encoder
    assert y.source.fields.field_map().metadata == ["lang"] and y.source.fields.field_map().title is None
    assert (y.schedule.cron, y.schedule.timezone, y.dask.address) == (
        "*/15 * * * *",
        "Europe/Paris",
        "tcp://scheduler:8786",
    )
    assert t.model_dump() == y.model_dump()
    # A dumped config (what a flow run receives as its parameter) loads back unchanged.
    assert PipelineConfig.parse(y.model_dump(mode="json")) == y


def test_the_shipped_example_is_valid():
    cfg = PipelineConfig.from_file(REPO / "deploy" / "pipeline.example.yaml")
    assert cfg.schedule.cron == "0 * * * *" and cfg.sync


@pytest.mark.parametrize(
    "body, expected",
    [
        ("source: {path: x.jsonl}\nbatch_sise: 3\n", ["batch_sise: unknown key (check the spelling)"]),
        ("source: {path: x.jsonl, format: xml}\n", ["source.format: unknown source format 'xml'"]),
        ("store: qdrant-edge://x\n", ["source: Field required"]),
        (
            "source: {path: x.jsonl}\nbatch_size: 0\nchunk_overlap: -1\n",
            ["batch_size: Input should be greater than or equal to 1", "chunk_overlap:"],
        ),
        ("source: {path: x.jsonl}\nschedule: {cron: every hour}\n", ["schedule: Invalid cron string"]),
        (
            "source: {path: x.jsonl}\nschedule: {cron: '0 * * * *', timezone: Mars/Olympus}\n",
            ["schedule: Invalid timezone"],
        ),
        (
            "source: {path: x.jsonl}\nmodels: {sparse: null, dense: none, bm25: false}\n",
            ["models: nothing to index with"],
        ),
        (
            "source: {path: x.jsonl}\ndask: {n_workers: 0}\n",
            ["dask.n_workers: Input should be greater than or equal to 1"],
        ),
    ],
)
def test_invalid_configs_name_the_file_and_every_bad_key(tmp_path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(PipelineConfigError) as err:
        PipelineConfig.from_file(path)
    msg = str(err.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(PipelineConfigError, match="no such config file"):
        PipelineConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(PipelineConfigError, match=r"use \.yaml, \.yml or \.toml"):
        PipelineConfig.from_file(tmp_path / "p.json")
    (tmp_path / "p.yaml").write_text("source: [unclosed\n")
    with pytest.raises(PipelineConfigError, match="cannot parse"):
        PipelineConfig.from_file(tmp_path / "p.yaml")
    (tmp_path / "q.toml").write_text("store = \n")
    with pytest.raises(PipelineConfigError, match="cannot parse"):
        PipelineConfig.from_file(tmp_path / "q.toml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(PipelineConfigError, match="expected a mapping"):
        PipelineConfig.from_file(tmp_path / "list.yaml")


def test_store_url_secrets_come_from_the_environment(monkeypatch):
    cfg = PipelineConfig.parse({"source": {"path": "x.jsonl"}, "store": "qdrant://db:6333/docs?api_key=${SH_TEST_KEY}"})
    monkeypatch.delenv("SH_TEST_KEY", raising=False)
    with pytest.raises(PipelineConfigError, match=r"\$\{SH_TEST_KEY\}, which is not set"):
        cfg.store_url()
    monkeypatch.setenv("SH_TEST_KEY", "s3cret")
    assert cfg.store_url() == "qdrant://db:6333/docs?api_key=s3cret"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.model_dump())  # the flow parameter stays clean


def test_a_runs_own_secret_fills_the_store_url_without_the_environment(monkeypatch):
    """run_pipeline hands secret_free's values to the flow explicitly: os.environ is never written."""
    from sparsehybrid.pipelines.flows import RunHooks, secret_free

    monkeypatch.delenv("SH_TEST_KEY", raising=False)
    cfg = PipelineConfig.parse({"source": {"path": "x.jsonl"}, "store": "opensearch://u:pw@db:9200/docs"})
    handed, values = secret_free(cfg)
    assert "pw" not in handed.store and handed.store_url(values) == "opensearch://u:pw@db:9200/docs"
    assert not set(values) & set(os.environ)
    with pytest.raises(PipelineConfigError, match="not set in the environment"):
        handed.store_url()  # nothing was put there
    assert "pw" not in repr(RunHooks(environ=values))
