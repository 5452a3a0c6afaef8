"""A run reports docs/s per step (chunk, each encoder, write): encoding overlaps writing, so the
wall time alone cannot say which step bounds a run (issue 21)."""

from __future__ import annotations

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document


def test_a_run_reports_the_rate_of_each_step_it_ran(tmp_path, tf_encoder):
    docs = [Document(id=f"d{i}", text=f"passage {i} about wing flutter and shock waves") for i in range(50)]
    store = QdrantEdgeStore(tmp_path / "idx")
    try:
        stats = Indexer(store, tf_encoder, None, bm25=True, batch_size=16).index(docs)
    finally:
        store.close()
    rates = stats.as_dict()["docs_per_second_by_step"]
    assert set(rates) == {"chunk", "sparse", "write"}  # no dense encoder: no dense step
    assert all(rate > 0 for rate in rates.values())
    assert set(stats.work) == set(rates) and all(seconds > 0 for seconds in stats.work.values())
    assert rates["sparse"] == round(50 / stats.work["sparse"], 1)
