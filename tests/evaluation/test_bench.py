"""The benchmark: BEIR loading, trec_eval metrics, run files, and the `sparsehybrid bench` flow."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sparsehybrid.evaluation.beir import BeirFormatError, load_beir, read_qrels
from sparsehybrid.evaluation.bench_config import Method
from sparsehybrid.evaluation.fusion_tuning import fused_run
from sparsehybrid.evaluation.metrics import METRICS, evaluate, per_query, read_trec_run, write_trec_run
from sparsehybrid.fusion import FusionSetting


def _write_beir(folder: Path, docs: list[dict], queries: list[dict], qrels: list[tuple[str, str, int]]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps(d) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        for q in queries:
            fh.write(json.dumps(q) + "\n")
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in qrels:
            fh.write(f"{q}\t{d}\t{s}\n")
    return folder


# -- BEIR loading ------------------------------------------------------------------------------
def test_unjudged_and_all_zero_queries_are_skipped_and_counted(tmp_path):
    docs = [{"_id": f"d{i}", "title": "t", "text": f"doc {i}"} for i in range(4)]
    queries = [
        {"_id": "q1", "text": "judged"},
        {"_id": "q2", "text": "no judgements"},
        {"_id": "q3", "text": "only zeros"},
    ]
    qrels = [("q1", "d0", 2), ("q1", "d1", 0), ("q3", "d2", 0)]
    ds = load_beir(_write_beir(tmp_path / "mini", docs, queries, qrels))
    assert list(ds.queries) == ["q1"]
    assert ds.skipped_unjudged == ["q2"] and ds.skipped_no_relevant == ["q3"]
    assert ds.qrels["q1"] == {"d0": 2, "d1": 0}  # zero judgements are kept (judged non-relevant)
    assert ds.relevant() == {"q1": {"d0"}}
    assert ds.summary()["queries_skipped_unjudged"] == 1 and ds.summary()["documents"] == 4


def test_cacm_unjudged_queries_are_counted(datasets_dir):
    ds = load_beir(datasets_dir / "cacm")
    assert len(ds.queries) == 52 and len(ds.skipped_unjudged) == 12  # as its README says
    assert len(ds.corpus) == 3204


def test_bad_qrels_score_names_file_line_and_field(tmp_path):
    folder = _write_beir(
        tmp_path / "bad", [{"_id": "d0", "text": "x"}], [{"_id": "q1", "text": "x"}], [("q1", "d0", "high")]
    )
    with pytest.raises(BeirFormatError, match=r"test.tsv:2 .*'score'"):
        read_qrels(folder / "qrels" / "test.tsv")


# -- metrics -----------------------------------------------------------------------------------
def test_zero_score_judgements_are_non_relevant():
    qrels = {"q": {"a": 0, "b": 1}}
    m = evaluate(qrels, {"q": [("a", 3.0), ("b", 2.0), ("c", 1.0)]})
    assert m["MRR@10"] == pytest.approx(0.5)  # "a" is judged but not relevant
    assert m["Recall@100"] == pytest.approx(1.0)  # one relevant document, found
    assert evaluate(qrels, {"q": [("a", 1.0)]})["NDCG@10"] == 0.0


def test_mrr_at_10_is_cut_at_10():
    run = {"q": [(f"n{i}", 100.0 - i) for i in range(10)] + [("rel", 1.0)]}
    assert evaluate({"q": {"rel": 1}}, run)["MRR@10"] == 0.0
    assert evaluate({"q": {"rel": 1}}, run)["MAP@100"] > 0.0


def test_queries_without_results_count_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate(qrels, {"q1": [("a", 1.0)]})["NDCG@10"] == pytest.approx(0.5)


def _bm25_run(cranfield: Path):
    """A real ranked run on Cranfield (rank-bm25, no encoders), with graded qrels."""
    from rank_bm25 import BM25Okapi

    ds = load_beir(cranfield)
    tok = lambda s: s.lower().replace(".", " ").replace(",", " ").split()  # noqa: E731
    bm25 = BM25Okapi([tok(d.full_text) for d in ds.corpus])
    ids = [d.id for d in ds.corpus]
    run = {}
    for qid, text in list(ds.queries.items())[:80]:
        scores = bm25.get_scores(tok(text))
        top = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:100]
        run[qid] = [(ids[i], float(scores[i])) for i in top]
    return ds, run


def test_metrics_match_pytrec_eval(cranfield):
    import pytrec_eval

    ds, run = _bm25_run(cranfield)
    qids = list(run)
    ours = per_query(ds.qrels, run, qids)
    qrels = {q: ds.qrels[q] for q in qids}
    full = {q: dict(r) for q, r in run.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "map_cut_100", "recall_100"}).evaluate(full)
    # trec_eval's recip_rank has no cutoff: give it each run's first ten.
    top10 = {q: dict(r[:10]) for q, r in run.items()}
    ref_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for q in qids:
        assert ours["NDCG@10"][q] == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-9)
        assert ours["MAP@100"][q] == pytest.approx(ref[q]["map_cut_100"], abs=1e-9)
        assert ours["Recall@100"][q] == pytest.approx(ref[q]["recall_100"], abs=1e-9)
        assert ours["MRR@10"][q] == pytest.approx(ref_rr[q]["recip_rank"], abs=1e-9)
    assert 0.2 < sum(ours["NDCG@10"].values()) / len(qids) < 0.8  # graded gains used, a real run


def test_trec_run_round_trip(tmp_path):
    run = {"q1": [("d3", 2.5), ("d1", 1.25)], "q2": [("d2", 0.1)]}
    path = write_trec_run(tmp_path / "r.trec", run, tag="test")
    assert path.read_text().splitlines()[0] == "q1 Q0 d3 1 2.5 test"
    assert read_trec_run(path) == run
    with pytest.raises(ValueError, match="'bad id'"):
        write_trec_run(tmp_path / "x.trec", {"q": [("bad id", 1.0)]}, tag="t")


# -- the flow, end to end through the CLI ------------------------------------------------------
def _cranfield_subset(cranfield: Path, folder: Path, qids: list[str], n_docs: int) -> Path:
    """Judged docs of ``qids`` plus random others, the queries, one unjudged and one all-zero query."""
    rows = list(
        csv.DictReader((cranfield / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t")
    )
    docs = [json.loads(line) for line in (cranfield / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = {
        json.loads(line)["_id"]: json.loads(line)
        for line in (cranfield / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    }
    judged = [r for r in rows if r["query-id"] in qids]
    keep: set[str] = set()
    for q in qids:  # up to 5 judged documents per query, so every query keeps relevant ones
        keep |= set([r["corpus-id"] for r in judged if r["query-id"] == q and int(r["score"]) > 0][:5])
    rest = [d for d in docs if d["_id"] not in keep]
    random.Random(0).shuffle(rest)
    chosen = [d for d in docs if d["_id"] in keep]
    chosen += rest[: max(0, n_docs - len(chosen))]
    ids = {d["_id"] for d in chosen}
    qrels = [(r["query-id"], r["corpus-id"], int(r["score"])) for r in judged if r["corpus-id"] in ids]
    qrels.append(("zero-only", chosen[0]["_id"], 0))
    qs = [queries[q] for q in qids] + [
        {"_id": "unjudged", "text": "supersonic flutter"},
        {"_id": "zero-only", "text": "heat transfer"},
    ]
    return _write_beir(folder, chosen, qs, qrels)


def _bench_cli(args: list[str], prefect_home: Path, prefect_api: str) -> subprocess.CompletedProcess:
    """``sparsehybrid bench`` against the session's Prefect API (a run of its own would start, and
    wait for, a temporary API server each time)."""
    env = dict(
        os.environ,
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=prefect_api,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sparsehybrid.cli", "bench", *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def bench_out(cranfield, tmp_path_factory, prefect_api):
    """Two small Cranfield subsets benchmarked with the real default models, --parity on."""
    root = tmp_path_factory.mktemp("bench")
    a = _cranfield_subset(cranfield, root / "cran-a", ["1", "2", "3", "4"], 30)
    b = _cranfield_subset(cranfield, root / "cran-b", ["5", "6", "7", "8"], 30)
    out = root / "out"
    args = [str(a), str(b), "--out", str(out), "--parity", "--max-length", "64", "--batch-size", "16"]
    first = _bench_cli(args, root / "prefect", prefect_api)
    # Same corpus and models: the index is reused; this run also tunes fusion (4 queries: 2 folds).
    second = _bench_cli([*args, "--tune", "--folds", "2"], root / "prefect", prefect_api)
    return {"out": out, "datasets": [a, b], "first": first, "second": second}


def test_bench_writes_every_output(bench_out):
    out = bench_out["out"]
    for name in ("results.md", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0
    for png in ("ndcg10.png", "quality_latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "results.json").read_text())
    methods = ["BM25", "Sparse", "Dense", "Hybrid RRF", "Hybrid RRF+BM25"]
    for ds in ("cran-a", "cran-b"):
        searched = ("bm25", "sparse", "dense", "hybrid-rrf", "hybrid-rrf-bm25")
        offline = (
            "tuned-fusion-cv",
            *(f"unsupervised-{r}" for r in ("rrf-agreement-weighted", "min-max", "z-score", "dbsf")),
        )
        assert sorted(p.name for p in (out / "runs" / ds).iterdir()) == sorted(f"{m}.trec" for m in searched + offline)
        assert report["datasets"][ds]["queries_evaluated"] == 4
        assert report["datasets"][ds]["queries_skipped_unjudged"] == 1
        assert report["datasets"][ds]["queries_skipped_no_relevant"] == 1
    assert [r["method"] for r in report["table"] if r["dataset"] == "mean"][: len(methods)] == methods
    cfg = report["config"]
    assert cfg["models"] == {"sparse": "splade-tiny", "dense": "all-MiniLM-L6-v2", "reranker": None}
    assert cfg["candidates"] == 100 and cfg["rrf_k"] == 60 and cfg["chunking"] is False
    assert (
        report["versions"]["sentence-transformers"] and report["hardware"]["cores"] >= 1 and "gpu" in report["hardware"]
    )
    md = (out / "results.md").read_text()
    assert "| **mean** | **Hybrid RRF** |" in md and "Parity" in md
    assert "bench done" in bench_out["first"].stdout


def test_parity_with_sentence_transformers_evaluators(bench_out):
    report = json.loads((bench_out["out"] / "results.json").read_text())
    for ds, per in report["parity"].items():
        assert abs(per["Sparse"]["difference"]) <= 0.002, (ds, per)
        assert abs(per["Dense"]["difference"]) <= 0.01, (ds, per)
        assert 0.0 < per["Sparse"]["sentence_transformers_ndcg@10"] <= 1.0
    assert report["parity_ok"] is True


def test_table_rows_match_metrics_recomputed_from_run_files(bench_out):
    """Every CSV row equals pytrec_eval / ir-measures on the written TREC run file."""
    out = bench_out["out"]
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    datasets = {p.name: load_beir(p) for p in bench_out["datasets"]}
    checked = 0
    for row in rows:
        if row["dataset"] == "mean":
            mine = [r for r in rows if r["method"] == row["method"] and r["dataset"] != "mean"]
            for k in METRICS:
                assert float(row[k]) == pytest.approx(sum(float(r[k]) for r in mine) / len(mine), abs=1e-12)
            continue
        ds = datasets[row["dataset"]]
        run = read_trec_run(out / "runs" / row["dataset"] / f"{Method(row['method'], 'hybrid').slug}.trec")
        assert set(run) == set(ds.queries)
        recomputed = evaluate(ds.qrels, run, ds.queries)
        for k in METRICS:
            assert float(row[k]) == pytest.approx(recomputed[k], abs=1e-12), (row, k)
        assert int(row["queries"]) == len(ds.queries)
        checked += 1
    assert checked == 2 * 10  # 5 searched methods, tuned fusion and 4 judgement-free rules per dataset


def test_hybrid_rrf_is_plain_rrf_of_the_single_retriever_runs(bench_out):
    """Tuning fuses the single-retriever runs offline; that must be what the searcher does."""
    out = bench_out["out"]
    for ds in ("cran-a", "cran-b"):
        runs = {r: read_trec_run(out / "runs" / ds / f"{r}.trec") for r in ("sparse", "dense", "bm25")}
        for name, used in (("hybrid-rrf", ("sparse", "dense")), ("hybrid-rrf-bm25", ("sparse", "dense", "bm25"))):
            searched = read_trec_run(out / "runs" / ds / f"{name}.trec")
            fused = fused_run({r: runs[r] for r in used}, FusionSetting(), list(searched), limit=100)
            for q in searched:
                # Equal RRF sums may be ordered differently by the engine's native fusion; rank
                # metrics order ties by id anyway. Compare all but the last (possibly cut) tie.
                assert _tie_groups(fused[q]) == _tie_groups(searched[q]), (ds, name, q)


def _tie_groups(ranking):
    """The ranking as (score, id) sorted; scores at 6 decimals (the engine fuses in float32)."""
    last = round(ranking[-1][1], 6)
    return sorted((-round(s, 6), d) for d, s in ranking if round(s, 6) > last)


def test_tuned_bench_records_fusion_and_reports_significance(bench_out):
    out = bench_out["out"]
    report = json.loads((out / "results.json").read_text())
    methods = {r["method"] for r in report["table"] if r["dataset"] == "cran-a"}
    assert "Tuned fusion (CV)" in methods and "Unsupervised: DBSF" in methods
    for ds in ("cran-a", "cran-b"):
        fusion = report["fusion"][ds]
        assert fusion["folds"] == 2 and len(fusion["fold_reports"]) == 2
        assert set(fusion["sweep"]) == {"rrf_k", "dense_weight"}
        schema = json.loads(
            (Path(fusion["recorded_in"].removeprefix("qdrant-edge://")) / "sparsehybrid.json").read_text()
        )
        assert schema["fusion"] == fusion["chosen"]
        sig = report["significance"][ds]
        assert sig["baseline"] in ("BM25", "Sparse", "Dense")
        assert set(sig["comparisons"]) == methods - {sig["baseline"]}
        for c in sig["comparisons"].values():
            assert 0.0 <= c["t_p"] <= c["t_p_holm"] <= 1.0 and 0.0 <= c["randomisation_p_holm"] <= 1.0
    rows = list(csv.DictReader((out / "per_query.csv").read_text(encoding="utf-8").splitlines()))
    assert {(r["dataset"], r["method"]) for r in rows} == {
        (r["dataset"], r["method"]) for r in report["table"] if r["dataset"] != "mean"
    }
    assert len(rows) == 2 * len(methods) * 4  # every method, every evaluated query
    assert (out / "fusion_sweep.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert "### Tuned fusion" in md and "### Judgement-free defaults" in md and "Holm" in md


def test_rerun_reuses_the_index(bench_out):
    report = json.loads((bench_out["out"] / "results.json").read_text())  # written by the second run
    for ds in ("cran-a", "cran-b"):
        idx = report["indexing"][ds]
        assert idx["reused"] is True and idx["added"] == 0 and idx["unchanged"] == idx["seen"] == 30
        assert idx["docs_per_second_measured"] > 0  # from the run that built it
        assert "index-" + ds in idx["store"]
