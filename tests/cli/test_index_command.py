"""`sparsehybrid index` is a thin driver: it opens the store once, and the library plans on it."""

from __future__ import annotations

from typer.testing import CliRunner

import sparsehybrid.connectors as connectors
from sparsehybrid import Indexer, open_store
from sparsehybrid.cli import app
from tests.support import as_documents, cranfield_rows, free_port, write_jsonl


def test_a_rerun_opens_the_store_once_for_models_and_the_no_op_check(tmp_path, cranfield, tf_encoder, monkeypatch):
    rows = cranfield_rows(cranfield, 20)
    src = write_jsonl(tmp_path / "c.jsonl", rows)
    url = f"qdrant-edge://{tmp_path}/idx"
    store = open_store(url)
    Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
    store.close()
    opened: list[str] = []
    real = connectors.open_index_sink

    def counting(target: str, **options):
        opened.append(target)
        return real(target, **options)

    monkeypatch.setattr(connectors, "open_index_sink", counting)
    env = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api", "COLUMNS": "200"}  # nothing there: not needed
    result = CliRunner().invoke(app, ["index", str(src), "--store", url], env=env)
    assert result.exit_code == 0, result.output
    assert "20 documents: nothing changed since the last run" in result.output
    assert opened == [url]  # recorded models and the unchanged check read the one open store
    reopened = open_store(url)  # and it was closed again
    reopened.close()
