"""Schemathesis against the service's own /openapi.json: generated requests (bounded) to every
search and service endpoint get no server error and no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import HybridSearcher
from sparsehybrid.service.app import create_app
from sparsehybrid.service.batching import BatchingSettings
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from tests.support import as_documents, cranfield_rows


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, cranfield, tf_encoder) -> Iterator[schemathesis.BaseSchema]:
    rows = cranfield_rows(cranfield, 40)
    for i, r in enumerate(rows):
        r["year"] = 1960 + i % 7
    store = QdrantEdgeStore(tmp_path_factory.mktemp("fuzz") / "idx")
    Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
    service = SearchService(store, lambda s: HybridSearcher(s, tf_encoder), batching=BatchingSettings(workers=2))
    app = create_app(service, ServiceSettings(max_top_k=50, max_candidates=200, max_batch=8))
    try:
        # the index jobs' /store endpoints need the store's write token: not part of the public API
        yield schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex="^/store")
    finally:
        service.close()


def test_no_server_error_and_no_schema_violation(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/search/batch", "/info", "/healthz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case):
            # Every check but "schema-valid data is accepted": a filter on a field the collection
            # never stored, or a mode whose encoder the index lacks, is a documented 400.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
