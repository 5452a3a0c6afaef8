"""Every 4xx/5xx of the service is the documented JSON (error, kind, detail), the README's curl
example works as written, and a blank API key is refused."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.search import HybridSearcher
from sparsehybrid.service.app import create_app
from sparsehybrid.service.core import SearchService
from sparsehybrid.service.settings import ServiceSettings
from tests.support import as_documents, cranfield_rows, serving


@pytest.fixture(scope="module")
def url(tmp_path_factory, cranfield, tf_encoder) -> Iterator[str]:
    store = QdrantEdgeStore(tmp_path_factory.mktemp("errors") / "idx")
    Indexer(store, tf_encoder, bm25=True).index(as_documents(cranfield_rows(cranfield, 30)))
    svc = SearchService(store, lambda s: HybridSearcher(s, tf_encoder))
    try:
        with serving(create_app(svc, ServiceSettings())) as u:
            yield u
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/nope", None, 404),
        ("GET", "/search", None, 405),
        ("POST", "/search", b"{not json", 422),
        ("POST", "/search", b"", 422),
        ("POST", "/search", b"[1, 2]", 422),
        ("POST", "/search/batch", b'{"queries": "wing"}', 422),
    ],
)
def test_every_error_is_the_documented_json(url, method, path, body, status):
    r = httpx.request(method, url + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status, r.text
    data = r.json()
    assert set(data) == {"error", "kind", "detail"}, data
    assert data["detail"] and "\n" not in data["detail"]


def test_the_readmes_curl_example_works_as_written(url):
    """``curl -d`` sends ``application/x-www-form-urlencoded``: the search endpoints read JSON anyway."""
    out = subprocess.run(
        ["curl", "-s", "-w", "\\n%{http_code}", url + "/search", "-d", '{"query": "wing flutter", "top_k": 3}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200", body
    assert len(httpx.Response(200, content=body).json()["hits"]) == 3


@pytest.mark.parametrize("key", ["   ", " " * 32, "\t\t"])
def test_a_blank_api_key_is_refused(key):
    with pytest.raises(ValueError, match="blank"):
        ServiceSettings(api_key=key).check()
