"""The conformance suite on the embedded Qdrant Edge store."""

from __future__ import annotations

import pytest

from sparsehybrid.connectors import open_store

from .conformance import StoreConformance


class TestQdrantEdgeConformance(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path):
        store = open_store(f"qdrant-edge://{tmp_path / 'index'}")
        yield store
        store.close()


def test_a_collection_built_without_bm25_finds_nothing_by_bm25_like_the_server_store(tmp_path):
    from sparsehybrid.connectors.base import CollectionSchema

    store = open_store(f"qdrant-edge://{tmp_path}/nobm25")
    store.ensure_schema(CollectionSchema(sparse_model="m", sparse_dim=100, bm25=False))
    assert store.search_bm25("anything at all", 10) == []  # was an AttributeError on a missing embedder
    store.close()


@pytest.mark.parametrize("suffix", ["?collection=docs", "?batch_size=500", "#frag"])
def test_embedded_url_options_never_become_part_of_the_directory_name(tmp_path, suffix):
    with pytest.raises(ValueError, match=r"option|fragment") as err:
        open_store(f"qdrant-edge://{tmp_path}/idx{suffix}")
    assert "idx" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing was created under a mangled name


def test_embedded_url_takes_its_options_from_the_query(tmp_path):
    store = open_store(f"qdrant-edge://{tmp_path}/idx?exact_dense=true")
    assert store.exact_dense and store.url == f"qdrant-edge://{tmp_path}/idx"
    store.close()


def test_config_files_resolve_relative_embedded_paths_and_keep_options(tmp_path):
    from sparsehybrid.connectors.registry import local_path, rebase_local_url

    assert (
        rebase_local_url("qdrant-edge://idx?exact_dense=1", tmp_path) == f"qdrant-edge://{tmp_path}/idx?exact_dense=1"
    )
    assert rebase_local_url("opensearch://host:9200/idx", tmp_path) == "opensearch://host:9200/idx"
    assert local_path("qdrant-edge:///abs/idx?exact_dense=1") == "/abs/idx"
