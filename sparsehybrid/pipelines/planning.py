"""Planning an index run before any model or Prefect starts, on the store the run then uses.

A re-run of an unchanged corpus needs only the source and the stored content hashes: it takes
seconds instead of starting an API and loading models. And a collection records its models, so
re-indexing needs no model options, as searching needs none. Both read one open
:class:`~sparsehybrid.connectors.IndexSink`, which the run itself then writes through.
"""

from __future__ import annotations

import time
from typing import Any

from ..connectors.sink import IndexSink
from ..encoders.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL
from ..ingestion.indexing import IndexStats, plan_index, rejection_failure
from ..ingestion.sources import open_source
from .config import PipelineConfig


def recorded_models(sink: IndexSink) -> tuple[str, str]:
    """The (sparse, dense) models the collection was built with ("none" for one it lacks); the
    defaults for a new collection."""
    schema = sink.schema
    if schema is None:
        return DEFAULT_SPARSE_MODEL, DEFAULT_DENSE_MODEL
    return schema.sparse_model or "none", schema.dense_model or "none"


def unchanged_summary(cfg: PipelineConfig, sink: IndexSink) -> dict[str, Any] | None:
    """The summary of a run with nothing to do (nothing to encode, delete, dead-letter or fail
    on); None when the run has work, which then goes through the flow as usual."""
    t0 = time.perf_counter()
    if sink.schema is None:
        return None
    stats = IndexStats()
    items = open_source(cfg.source.path, cfg.source.fields.field_map(), cfg.source.format)
    with plan_index(sink, items, stats, sync=cfg.sync) as plan:
        todo, vanished = plan.todo, plan.vanished
    if todo or vanished or (stats.rejected and cfg.dead_letter) or rejection_failure(stats, cfg.max_reject_fraction):
        return None
    stats.seconds = time.perf_counter() - t0
    return stats.summary(sink.url)
