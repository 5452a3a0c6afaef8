"""The README's LlamaIndex and Haystack examples, run as written against a served test index
(only the service URL is replaced by the test service's)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.conftest import REPO

README_URL = "http://localhost:8080"


def readme_example(name: str) -> str:
    """The ```python block right after ``<!-- example: NAME -->`` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)\n```", text, re.S)
    assert match, f"README.md has no example {name!r}"
    return match.group(1)


def run_example(name: str, url: str) -> tuple[dict, str]:
    code = readme_example(name)
    assert README_URL in code
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace(README_URL, url), f"README.md:{name}", "exec"), namespace)
    return namespace, out.getvalue()


def test_llamaindex_example(service_url):
    pytest.importorskip("llama_index.core")
    namespace, printed = run_example("llamaindex", service_url)
    first = printed.splitlines()[0].split()
    assert first[1] == "a" and first[2].startswith("bm25#1")  # score, node id, explanation
    assert namespace["answer"].source_nodes[0].node.node_id == "a"
    namespace["retriever"].searcher.close()


def test_haystack_example(service_url):
    pytest.importorskip("haystack")
    namespace, printed = run_example("haystack", service_url)
    assert printed.startswith("funded depreciation sets aside cash") and "Q: funded depreciation" in printed
    assert service_url in namespace["saved"]
    assert namespace["again"].get_component("retriever").searcher.url == service_url
    for pipeline in (namespace["pipeline"], namespace["again"]):
        pipeline.get_component("retriever").searcher.close()
