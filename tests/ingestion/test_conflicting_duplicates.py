"""A duplicate id with different text is named, not only counted (issue 23)."""

from __future__ import annotations

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document


def test_an_id_given_twice_with_different_text_is_named(tmp_path):
    docs = [
        Document(id="a", text="wing flutter"),
        Document(id="b", text="boundary layer"),
        Document(id="a", text="a different text for a"),
        Document(id="b", text="boundary layer"),  # the same copy again: counted, not a conflict
    ]
    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        stats = Indexer(store, bm25=True).index(docs)
        assert stats.duplicates == 2 and stats.conflicting_ids == ["a"]
        assert stats.as_dict()["conflicting_ids"] == ["a"]
        texts = {p.payload["doc_id"]: p.payload["text"] for p in store.iter_points()}
        assert texts == {"a": "a different text for a", "b": "boundary layer"}  # the last copy wins
    finally:
        store.close()
