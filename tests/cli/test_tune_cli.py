"""`sparsehybrid tune` as a user runs it: a judged BEIR folder, an index built from its corpus."""

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import cli_env, index_command

pytestmark = pytest.mark.slow  # loads SPLADE-tiny in subprocesses


@pytest.fixture(scope="module")
def judged(cranfield, tmp_path_factory):
    """12 Cranfield queries, their judged documents and 80 others, indexed with SPLADE-tiny + BM25."""
    root = tmp_path_factory.mktemp("tune")
    folder = root / "cran"
    (folder / "qrels").mkdir(parents=True)
    queries = [json.loads(x) for x in (cranfield / "queries.jsonl").read_text().splitlines()][:12]
    qids = {q["_id"] for q in queries}
    lines = (cranfield / "qrels" / "test.tsv").read_text().splitlines()
    rows = [r for r in csv.DictReader(lines, delimiter="\t") if r["query-id"] in qids]
    judged_docs = {r["corpus-id"] for r in rows}
    docs = [json.loads(x) for x in (cranfield / "corpus.jsonl").read_text().splitlines()]
    keep = [d for d in docs if d["_id"] in judged_docs] + [d for d in docs if d["_id"] not in judged_docs][:80]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    with open(folder / "qrels" / "test.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows((r["query-id"], r["corpus-id"], r["score"]) for r in rows)
    store = root / "idx"
    proc = subprocess.run(
        index_command(folder, store, "--dense-model", "none"), env=cli_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder, f"qdrant-edge://{store}", root


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sparsehybrid.cli", *args], env=cli_env(), capture_output=True, text=True, timeout=600
    )


def _info(store):
    proc = _cli("info", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_tune_reports_cross_validated_gains_and_records_the_setting(judged):
    folder, store, root = judged
    dry = _cli("tune", str(folder), "--store", store, "--folds", "3", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "not recorded: --dry-run" in dry.stdout and _info(store)["fusion"] is None

    report_path = root / "tune.json"
    proc = _cli("tune", str(folder), "--store", store, "--folds", "3", "--out", str(report_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3-fold CV" in proc.stdout and "best single retriever" in proc.stdout and "recorded in" in proc.stdout
    report = json.loads(report_path.read_text())
    assert report["retrievers"] == ["sparse", "bm25"] and len(report["fold_reports"]) == 3
    assert sum(f["queries"] for f in report["fold_reports"]) == 12
    assert _info(store)["fusion"] == report["chosen"]

    # search uses the recorded setting by default; --weights overrides it for one query.
    search = _cli("search", "boundary layer flow", "--store", store, "--json")
    assert search.returncode == 0, search.stderr[-2000:]
    plain = _cli("search", "boundary layer flow", "--store", store, "--json", "--weights", "sparse=1,bm25=1")
    assert plain.returncode == 0
    chosen = report["chosen"]
    if chosen["method"] == "rrf" and set(chosen["weights"].values()) == {1.0}:
        assert json.loads(search.stdout) == json.loads(plain.stdout)


def test_tune_errors_are_one_line(judged, tmp_path):
    folder, store, _ = judged
    proc = _cli("tune", str(tmp_path / "nope"), "--store", store)
    assert proc.returncode == 1 and "is not a directory" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("tune", str(folder), "--store", f"qdrant-edge://{tmp_path}/empty")
    assert proc.returncode == 1 and "holds no collection yet" in proc.stderr
    proc = _cli("tune", str(folder), "--store", store, "--folds", "20")
    assert proc.returncode == 1 and "12 judged queries cannot make 20 folds" in proc.stderr
