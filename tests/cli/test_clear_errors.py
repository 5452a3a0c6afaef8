"""Clear errors and readable output: one line per failure (never a traceback), filters that
cannot match are refused, tables fit 80 columns, and a full disk is an error, not a crash."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparsehybrid import Indexer, open_store
from sparsehybrid.cli import app
from sparsehybrid.connectors.base import StoreError
from sparsehybrid.connectors.filters import FilterError
from tests.conftest import cli_env, index_command
from tests.support import as_documents, cranfield_rows, free_port

ROWS = [
    {"_id": "a", "text": "supersonic flow over a wedge", "year": 1960, "lang": "en", "a.b": "dotted"},
    {"_id": "b", "text": "heat transfer in boundary layers", "year": 1971, "lang": "en", "a.b": "dotted"},
]


@pytest.fixture
def small_store(tmp_path, tf_encoder):
    idx = tmp_path / "idx"
    store = open_store(f"qdrant-edge://{idx}")
    Indexer(store, tf_encoder, bm25=True).index(as_documents(ROWS))
    yield store, idx
    store.close()


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    out = result.output.strip()
    assert "Traceback" not in out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out
    return out


def test_filters_that_could_never_match_are_refused_with_the_fields_type(small_store):
    store, _ = small_store
    with pytest.raises(FilterError, match=r"'year' holds number values; '2001' is a str"):
        store.search_bm25("flow", 5, filter={"year": "2001"})
    with pytest.raises(FilterError, match=r"'lang' holds keyword values; a range needs a number field"):
        store.search_bm25("flow", 5, filter={"lang": {"gte": 3}})
    with pytest.raises(FilterError, match=r"'a.b' is unfilterable \(its key contains '.'\)"):
        store.search_bm25("flow", 5, filter={"a.b": "dotted"})
    with pytest.raises(FilterError, match="outside the 64-bit range"):
        store.search_bm25("flow", 5, filter={"year": 2**63})
    assert [p.doc_id for p in store.search_bm25("flow", 5, filter={"year": {"lt": 1965}})] == ["a"]


def test_info_has_json_output(small_store):
    store, idx = small_store
    store.close()
    result = CliRunner().invoke(app, ["info", "--store", f"qdrant-edge://{idx}", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["documents"] == 2 and d["sparse_model"] == "test/term-frequency"
    assert d["metadata_fields"]["year"] == "number"


def test_info_errors_are_one_line(tmp_path):
    runner = CliRunner()
    port = free_port()
    for url in (
        f"opensearch://127.0.0.1:{port}/idx?retries=1&timeout=1",
        f"elasticsearch://127.0.0.1:{port}/idx?retries=1&timeout=1",
    ):
        assert "unavailable" in _one_line_error(runner.invoke(app, ["info", "--store", url]))
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a store")
    assert "is a file" in _one_line_error(runner.invoke(app, ["info", "--store", str(a_file)]))


def test_search_errors_are_one_line(tmp_path):
    idx = tmp_path / "bm25"
    store = open_store(f"qdrant-edge://{idx}")
    Indexer(store, bm25=True).index(as_documents(ROWS))  # no model to load: the CLI test stays fast
    store.close()
    runner = CliRunner()
    url = f"qdrant-edge://{idx}"
    out = _one_line_error(
        runner.invoke(app, ["search", "wing", "--store", url, "--filter", '{"year": 99999999999999999999}'])
    )
    assert "64-bit" in out
    out = _one_line_error(runner.invoke(app, ["search", "wing", "--store", url, "--weights", "dnese=5"]))
    assert "dnese" in out
    # Invalid UTF-8 on the command line arrives surrogate-escaped.
    assert "not valid UTF-8" in _one_line_error(runner.invoke(app, ["search", "bad \udcff query", "--store", url]))


def test_a_read_only_file_system_is_one_line(tmp_path, cranfield, prefect_api):
    ro = tmp_path / "ro"
    ro.mkdir()
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in cranfield_rows(cranfield, 3)))
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions: use a real read-only mount if we can
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "ro,size=256m", "tmpfs", str(ro)], capture_output=True
            )
            if mounted.returncode != 0:
                pytest.skip("cannot make a read-only directory here (root without mount)")
        cmd = index_command(src, ro / "idx", "--sparse-model", "none", "--dense-model", "none")
        env = cli_env(prefect_api)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 1
        assert "cannot create the store" in out.stderr and "Traceback" not in out.stderr, out.stderr
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
        os.chmod(ro, 0o755)


def test_tables_fit_80_columns(small_store, tf_encoder, monkeypatch):
    store, idx = small_store
    store.close()
    monkeypatch.setenv("COLUMNS", "80")
    runner = CliRunner()
    result = runner.invoke(app, ["info", "--store", f"qdrant-edge://{idx}"], env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "metadata fields" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    from sparsehybrid.cli.indexing import print_summary
    from sparsehybrid.ingestion.indexing import IndexStats

    stats = IndexStats(seen=123456, added=120000, updated=3456, unchanged=0, chunks=987654)
    from sparsehybrid.cli import app as _app  # noqa: F401  (console configured by the app module)
    from sparsehybrid.cli.app import console

    with console.capture() as cap:
        console.width = 80
        print_summary(stats.summary("qdrant-edge://./" + "very-long-store-name/" * 5))
    text = cap.get()
    for header in ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks"):
        assert header in text  # not cut to "unchan…"
    assert all(len(line) <= 80 for line in text.splitlines())


def test_search_output_is_short_at_80_columns(tmp_path, tf_encoder):
    from sparsehybrid.cli.app import console
    from sparsehybrid.cli.searching import print_hits
    from sparsehybrid.search import HybridSearcher

    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    rows = [{"_id": f"doc-{i}", "text": "wing flutter " * 60 + str(i)} for i in range(10)]
    Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
    hits = HybridSearcher(store, tf_encoder).search("wing flutter", top_k=10)
    with console.capture() as cap:
        console.width = 80
        print_hits(hits, "wing flutter")
    lines = cap.get().splitlines()
    assert len(lines) <= 1 + 10 * 6, len(lines)  # was 175 lines for 10 hits in a 5-column table
    assert all(len(line) <= 80 for line in lines)
    store.close()


def test_a_full_disk_is_one_clear_error_and_the_store_survives(tmp_path, cranfield, tf_encoder):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail("this test needs a tmpfs mount (root): " + mounted.stderr.decode())
    try:
        rows = cranfield_rows(cranfield, 30)
        store = open_store(f"qdrant-edge://{disk}/idx")
        Indexer(store, tf_encoder, bm25=True).index(as_documents(rows[:10]))
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * (free - 8 * 2**20))  # leave 8 MiB: below the 64 MiB writes need
        with pytest.raises(StoreError, match=r"only \d+\.\d MiB free.*store is intact"):
            Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
        assert len(store.document_states()) == 10
        filler.unlink()
        again = Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
        assert again.unchanged == 10 and again.added == 20
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_cli_index_on_a_full_disk_prints_one_line(tmp_path, cranfield, prefect_api, monkeypatch):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in cranfield_rows(cranfield, 3)))
    cmd = index_command(src, tmp_path / "idx", "--sparse-model", "none", "--dense-model", "none")
    # More free space required than any disk has: the same refusal a full disk meets.
    env = cli_env(prefect_api, SPARSEHYBRID_MIN_FREE_MB=str(2**40))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "MiB free" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not Path(tmp_path / "idx" / "shard").exists()
