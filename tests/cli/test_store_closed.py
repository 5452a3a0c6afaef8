"""The CLI closes the store it opened on every path, errors included: Qdrant Edge allows one open
writer per index, so a store left open by a failed command locks the index for whatever the same
process (a notebook, a test run, a service) does next."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sparsehybrid import Indexer, open_store
from sparsehybrid.cli import app
from tests.support import as_documents

ROWS = [
    {"_id": "a", "text": "supersonic flow over a wedge", "year": 1960},
    {"_id": "b", "text": "heat transfer in boundary layers", "year": 1971},
]


@pytest.fixture
def bm25_index(tmp_path):
    """A BM25-only index (no model to load) and its URL, closed."""
    url = f"qdrant-edge://{tmp_path / 'bm25'}"
    store = open_store(url)
    Indexer(store, bm25=True).index(as_documents(ROWS))
    store.close()
    return url


@pytest.mark.parametrize(
    "bad_args",
    [
        ["--filter", '{"year": 99999999999999999999}'],  # refused by the store's filter check
        ["--weights", "dnese=5"],  # refused by the searcher
        ["--fusion", "nonsense"],  # refused by the fusion
    ],
    ids=["filter", "weights", "fusion"],
)
def test_a_failed_search_leaves_the_index_free_for_the_next_open(bm25_index, bad_args):
    result = CliRunner().invoke(app, ["search", "wing", "--store", bm25_index, *bad_args])
    assert result.exit_code == 1, result.output
    # ``result`` keeps the failed command's traceback, and with it its frames, alive: a store the
    # command did not close would still hold the index's lock here.
    reopened = open_store(bm25_index)
    try:
        assert reopened.count() == len(ROWS)
    finally:
        reopened.close()
    assert result.exc_info is not None


def test_a_successful_search_leaves_the_index_free(bm25_index):
    result = CliRunner().invoke(app, ["search", "supersonic wedge", "--store", bm25_index, "--mode", "bm25", "--json"])
    assert result.exit_code == 0, result.output
    assert '"doc_id": "a"' in result.output
    reopened = open_store(bm25_index)
    try:
        assert reopened.count() == len(ROWS)
    finally:
        reopened.close()
