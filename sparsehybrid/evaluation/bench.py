"""Retrieve-then-rerank benchmark on BEIR folders, as a Prefect flow.

For each dataset: index the corpus through the real :class:`~sparsehybrid.ingestion.indexing.Indexer` into a real store
(incremental, so an unchanged corpus is not re-encoded), run every judged query through the real
:class:`~sparsehybrid.search.HybridSearcher` for each method, score the runs with trec_eval
measures (:mod:`.metrics`), and write the table (Markdown, CSV), TREC run files, a JSON with
every number and the configuration, and two charts. ``parity=True`` also runs
sentence-transformers' own IR evaluators on the same models and data and compares NDCG@10, which
catches a store or query layer that loses ranking quality.

This module holds the stages and the flow; the configuration is in :mod:`.bench_config`, the
tables in :mod:`.reports` and the charts in :mod:`.plots`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .beir import BeirDataset, load_beir
from .bench_config import (
    PARITY_TOLERANCE,
    RERANK_SUFFIX,
    BenchConfig,
    Method,
    MethodResult,
    hardware,
    methods_for,
    package_versions,
    store_url_for,
)
from .fusion_study import SINGLE_METHODS, retriever_runs, study_fusion
from .metrics import METRICS, Run, binarize, evaluate, per_query, write_trec_run
from .plots import plot_ndcg, plot_quality_latency, plot_sweeps
from .reports import (
    SIGNIFICANCE_LEGEND,
    markdown_table,
    ndcg_pivot,
    parity_text,
    rerank_significance_text,
    significance_text,
    table_rows,
    tuning_text,
    unsupervised_text,
    write_csv,
    write_per_query_csv,
)
from .significance import compare_pairs, compare_to_baseline
from .tuning import OBJECTIVE

logger = logging.getLogger(__name__)


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def _count_over_length(docs, tokenizer, max_length: int) -> int:
    """Documents whose title + text is longer than ``max_length`` tokens (chunked or truncated)."""
    texts = [d.full_text for d in docs]
    n = 0
    for i in range(0, len(texts), 1024):
        ids = tokenizer(texts[i : i + 1024], add_special_tokens=True, verbose=False)["input_ids"]
        n += sum(len(x) > max_length for x in ids)
    return n


# -- the stages --------------------------------------------------------------------------------
def load_encoders(cfg: BenchConfig):
    from ..encoders.dense import DenseEncoder
    from ..encoders.reranker import Reranker
    from ..encoders.sparse import SparseEncoder

    sparse = (
        SparseEncoder(cfg.sparse_model, device=cfg.device, batch_size=cfg.batch_size, max_length=cfg.max_length)
        if cfg.sparse_model
        else None
    )
    dense = (
        DenseEncoder(cfg.dense_model, device=cfg.device, batch_size=cfg.batch_size, max_length=cfg.max_length)
        if cfg.dense_model
        else None
    )
    reranker = Reranker(cfg.reranker, device=cfg.device, batch_size=cfg.batch_size) if cfg.reranker else None
    return sparse, dense, reranker


def index_dataset(cfg: BenchConfig, ds: BeirDataset, sparse, dense, log=logger) -> tuple[Any, dict]:
    """Index (or refresh) the dataset's store; returns the open store and indexing numbers."""
    from ..connectors import open_store
    from ..ingestion.indexing import Indexer

    url = store_url_for(cfg, ds.name)
    store = open_store(url)
    if not cfg.chunking and store.schema is not None and store.count() > len(store.document_states()):
        store.close()
        raise ValueError(f"{url} holds chunked documents; --parity needs one point per document (use a fresh --store)")
    # Hand the encoders several of their batches at once: sentence-transformers sorts a call's texts
    # by length before batching, so mixed-length corpora waste far less on padding.
    indexer = Indexer(
        store, sparse, dense, bm25=cfg.bm25, batch_size=max(256, cfg.batch_size * 8), chunking=cfg.chunking
    )
    t_last = [time.perf_counter()]

    def on_batch(stats) -> None:
        if time.perf_counter() - t_last[0] > 30:
            t_last[0] = time.perf_counter()
            log.info(
                "%s: %d/%d documents encoded (%.1f docs/s)",
                ds.name,
                stats.encoded,
                len(ds.corpus),
                stats.encoded / max(stats.encode_seconds, 1e-9),
            )

    stats = indexer.index(ds.corpus, sync=True, on_batch=on_batch)
    store.optimize()
    info = stats.as_dict()
    info["store"] = store.url
    info["reused"] = stats.encoded == 0
    encoders = {k: e for k, e in (("sparse", sparse), ("dense", dense)) if e is not None}
    if encoders:
        # Chunking cuts at the smaller max length; without it each encoder truncates at its own.
        limits = {
            k: (min(x.max_length for x in encoders.values()) if cfg.chunking else e.max_length)
            for k, e in encoders.items()
        }
        info["long_documents"] = "chunked" if cfg.chunking else "truncated"
        info["documents_over_max_length"] = {
            k: _count_over_length(ds.corpus, encoders[k].tokenizer, n) for k, n in limits.items()
        }
        info["max_length"] = limits
    sidecar = Path(cfg.out) / ds.name / "indexing.json"
    if stats.encoded > 0:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps(info, indent=2))
        info["docs_per_second_measured"] = info["docs_per_second"]
    elif sidecar.exists():
        built = json.loads(sidecar.read_text())
        if built.get("store") == info["store"]:
            info["docs_per_second_measured"] = built.get("docs_per_second")
            info["built_by"] = built
    log.info(
        "%s: %s",
        ds.name,
        {
            k: info[k]
            for k in ("seen", "added", "updated", "unchanged", "deleted", "chunks", "seconds", "docs_per_second")
        },
    )
    return store, info


def run_method(searcher, ds: BeirDataset, method: Method, cfg: BenchConfig, log=logger) -> tuple[Run, list[float]]:
    """Every evaluated query through the searcher; returns the run and per-query latencies (s)."""
    kwargs = dict(
        top_k=cfg.candidates,
        mode=method.mode,
        candidates=cfg.candidates,
        rerank=method.rerank,
        rerank_top=cfg.rerank_top or cfg.candidates,
        explain=False,
    )
    first = next(iter(ds.queries.values()))
    searcher.search(first, **kwargs)  # warm-up: lazy initialisation is not query latency
    run: Run = {}
    latencies: list[float] = []
    for qid, text in ds.queries.items():
        t = time.perf_counter()
        hits = searcher.search(text, **kwargs)
        latencies.append(time.perf_counter() - t)
        run[qid] = [(h.doc_id, float(h.score)) for h in hits]
    log.info(
        "%s / %s: %d queries, p50 %.1f ms", ds.name, method.name, len(latencies), _percentile(latencies, 50) * 1000
    )
    return run, latencies


def st_parity(ds: BeirDataset, sparse, dense, runs: dict[str, Run], batch_size: int) -> dict[str, dict]:
    """NDCG@10 from sentence-transformers' evaluators vs ours, on the same queries and texts.

    The evaluators take ``{doc id: text}``; we give them ``Document.full_text`` (title + " " +
    text), exactly what the indexer encoded, and binary relevance (gain > 0), their model.
    """
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    corpus: dict[str, Any] = {d.id: d.full_text for d in ds.corpus}
    relevant = ds.relevant()
    binary = binarize(ds.qrels)
    out: dict[str, dict] = {}
    for name, cls, model in (
        ("Sparse", SparseInformationRetrievalEvaluator, sparse.model),
        ("Dense", InformationRetrievalEvaluator, dense.model),
    ):
        t = time.perf_counter()
        ev = cls(
            queries=dict(ds.queries),
            corpus=corpus,
            relevant_docs=relevant,
            batch_size=batch_size,
            write_csv=False,
            show_progress_bar=False,
        )
        res = ev(model)
        theirs = next(float(v) for k, v in res.items() if k.endswith("_ndcg@10"))
        ours = evaluate(binary, runs[name], ds.queries)["NDCG@10"]
        diff = ours - theirs
        out[name] = {
            "ours_ndcg@10": ours,
            "sentence_transformers_ndcg@10": theirs,
            "difference": diff,
            "tolerance": PARITY_TOLERANCE[name],
            "ok": abs(diff) <= PARITY_TOLERANCE[name],
            "evaluator": cls.__name__,
            "seconds": round(time.perf_counter() - t, 2),
        }
    return out


# -- reports -----------------------------------------------------------------------------------
def _tasks():
    """Prefect tasks, built lazily so importing this module does not import Prefect."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return (
        task(name="load-dataset", cache_policy=NO_CACHE, persist_result=False)(load_beir),
        task(name="index", cache_policy=NO_CACHE, persist_result=False)(index_dataset),
        task(name="search", cache_policy=NO_CACHE, persist_result=False)(run_method),
        task(name="parity", cache_policy=NO_CACHE, persist_result=False)(st_parity),
    )


def run_bench(cfg: BenchConfig, log=logger) -> dict:
    """The benchmark body (the Prefect flow wraps this). Returns the JSON report as a dict."""
    from ..search import HybridSearcher

    t0 = time.perf_counter()
    load_task, index_task, search_task, parity_task = _tasks()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    sparse, dense, reranker = load_encoders(cfg)
    model_seconds = time.perf_counter() - t
    results: list[MethodResult] = []
    indexing: dict[str, dict] = {}
    datasets: dict[str, dict] = {}
    parity: dict[str, dict] = {}
    fusion: dict[str, dict] = {}
    per_query_scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    significance: dict[str, dict[str, Any]] = {}
    for folder in cfg.datasets:
        ds = load_task(folder, split=cfg.split, max_queries=cfg.max_queries)
        datasets[ds.name] = ds.summary()
        log.info(
            "%s: %d documents, %d queries evaluated, %d skipped (%d unjudged, %d without a relevant judgement)",
            ds.name,
            len(ds.corpus),
            len(ds.queries),
            ds.n_skipped,
            len(ds.skipped_unjudged),
            len(ds.skipped_no_relevant),
        )
        store, info = index_task(cfg, ds, sparse, dense, log=log)
        indexing[ds.name] = info
        try:
            has_bm25 = cfg.bm25 and "bm25" in store.capabilities and bool(store.schema and store.schema.bm25)
            two = (
                HybridSearcher(store, sparse, dense, reranker, bm25=False, fusion="rrf", rrf_k=cfg.rrf_k, weights={})
                if (sparse or dense)
                else None
            )
            three = (
                HybridSearcher(store, sparse, dense, reranker, bm25=True, fusion="rrf", rrf_k=cfg.rrf_k, weights={})
                if has_bm25
                else None
            )
            runs: dict[str, Run] = {}
            t = time.perf_counter()
            for m in methods_for(sparse is not None, dense is not None, has_bm25, reranker is not None):
                searcher = three if (m.with_bm25 or m.mode == "bm25") else two
                run, lat = search_task(searcher, ds, m, cfg, log=log)
                runs[m.name] = run
                results.append(_method_result(out, ds, m.name, m.slug, run, lat))
            datasets[ds.name]["search_seconds"] = round(time.perf_counter() - t, 2)
            if cfg.tune and len(retriever_runs(runs)) >= 2:
                t = time.perf_counter()
                new_runs, tuned, fusion[ds.name] = study_fusion(
                    runs, ds.qrels, list(ds.queries), folds=cfg.folds, seed=cfg.seed, limit=cfg.candidates, log=log
                )
                for name, run in new_runs.items():
                    runs[name] = run
                    results.append(_method_result(out, ds, name, Method(name, "hybrid").slug, run, None))
                store.save_fusion(tuned.chosen.to_dict())
                fusion[ds.name]["recorded_in"] = store.url
                fusion[ds.name]["seconds"] = round(time.perf_counter() - t, 2)
                log.info("%s: tuned fusion %s (recorded in the collection)", ds.name, tuned.chosen.describe())
            per_query_scores[ds.name] = {name: per_query(ds.qrels, run, ds.queries) for name, run in runs.items()}
            significance[ds.name] = _significance(per_query_scores[ds.name], list(ds.queries), cfg.seed)
        finally:
            store.close()
        if cfg.parity:
            parity[ds.name] = parity_task(ds, sparse, dense, runs, cfg.batch_size)
            for name, p in parity[ds.name].items():
                log.info(
                    "parity %s / %s: ours %.4f, sentence-transformers %.4f, difference %+.4f (tolerance %s) %s",
                    ds.name,
                    name,
                    p["ours_ndcg@10"],
                    p["sentence_transformers_ndcg@10"],
                    p["difference"],
                    p["tolerance"],
                    "ok" if p["ok"] else "FAILED",
                )
        # Written after every dataset, so a long run that dies late still leaves its finished part.
        report = _write_reports(
            cfg,
            out,
            results,
            indexing,
            datasets,
            parity,
            (sparse, dense, reranker),
            model_seconds,
            t0,
            Studies(fusion, per_query_scores, significance),
        )
    return report


def _method_result(out: Path, ds: BeirDataset, name: str, slug: str, run: Run, latencies: list[float] | None):
    """Evaluate one method's run, write its TREC file, and make its table entry."""
    run_file = write_trec_run(out / "runs" / ds.name / f"{slug}.trec", run, tag=f"sparsehybrid-{slug}")
    return MethodResult(
        ds.name,
        name,
        evaluate(ds.qrels, run, ds.queries),
        _percentile(latencies, 50) * 1000 if latencies else None,
        _percentile(latencies, 95) * 1000 if latencies else None,
        len(run),
        str(run_file.relative_to(out)),
    )


def _significance(scores: dict[str, dict[str, dict[str, float]]], queries: list[str], seed: int) -> dict[str, Any]:
    """Every method against the collection's best single retriever (NDCG@10, Holm-corrected)."""
    singles = [m for m in SINGLE_METHODS if m in scores]
    if not singles:
        return {}
    ndcg = {m: s[OBJECTIVE] for m, s in scores.items()}
    best = max(singles, key=lambda m: sum(ndcg[m].values()))
    comparisons = compare_to_baseline(ndcg, best, queries, seed=seed)
    # Every +Rerank row also against the same retrieval without reranking: what the stage adds.
    reranked = {m: m.removesuffix(RERANK_SUFFIX) for m in ndcg if m.endswith(RERANK_SUFFIX)}
    reranking = compare_pairs(ndcg, {m: b for m, b in reranked.items() if b in ndcg}, queries, seed=seed)
    return {
        "baseline": best,
        "metric": OBJECTIVE,
        "comparisons": {m: {**asdict(c), "significant": c.significant, "mark": c.mark} for m, c in comparisons.items()},
        "reranking": {m: {**asdict(c), "significant": c.significant, "mark": c.mark} for m, c in reranking.items()},
    }


@dataclass
class Studies:
    """The optional analyses: fusion tuning, per-query scores, significance."""

    fusion: dict[str, dict]
    per_query: dict[str, dict[str, dict[str, dict[str, float]]]]
    significance: dict[str, dict[str, Any]]


def _write_reports(
    cfg: BenchConfig,
    out: Path,
    results,
    indexing,
    datasets,
    parity,
    encoders,
    model_seconds: float,
    t0: float,
    studies: Studies,
) -> dict:
    sparse, dense, reranker = encoders
    rows = table_rows(results, indexing)
    marks = {
        (d, m): c["mark"] for d, sig in studies.significance.items() for m, c in sig.get("comparisons", {}).items()
    }
    table = markdown_table(rows, marks)
    pivot = ndcg_pivot(rows, marks)
    md = f"## sparsehybrid bench\n\n{table}\n\n### NDCG@10\n\n{pivot}\n\n{SIGNIFICANCE_LEGEND}\n"
    if studies.significance:
        md += f"\n### Significance against the best single retriever\n\n{significance_text(studies.significance)}\n"
    if any(sig.get("reranking") for sig in studies.significance.values()):
        md += f"\n### Reranking against the same retrieval without it\n\n{rerank_significance_text(studies.significance)}\n"
    if studies.fusion:
        md += f"\n### Tuned fusion\n\n{tuning_text(studies.fusion)}\n"
        md += f"\n### Judgement-free defaults\n\n{unsupervised_text(rows)}\n"
        plot_sweeps(out / "fusion_sweep.png", {d: f["sweep"] for d, f in studies.fusion.items()})
    if parity:
        md += f"\n### Parity with sentence-transformers' evaluators\n\n{parity_text(parity)}\n"
    (out / "results.md").write_text(md, encoding="utf-8")
    write_csv(out / "results.csv", rows)
    write_per_query_csv(out / "per_query.csv", studies.per_query)
    plot_ndcg(out / "ndcg10.png", rows)
    plot_quality_latency(out / "quality_latency.png", rows)
    report = {
        "config": {
            **asdict(cfg),
            "chunking": cfg.chunking,
            "rerank_top": cfg.rerank_top or cfg.candidates,
            "top_k": cfg.candidates,
            "fusion": "rrf",
            "metrics": dict(METRICS),
            "relevance": "graded gains; score <= 0 is non-relevant",
            "models": {
                "sparse": sparse.name if sparse else None,
                "dense": dense.name if dense else None,
                "reranker": reranker.name if reranker else None,
            },
            "encoder_max_length": {
                "sparse": sparse.max_length if sparse else None,
                "dense": dense.max_length if dense else None,
            },
        },
        "versions": package_versions(),
        "hardware": hardware(),
        "datasets": datasets,
        "indexing": indexing,
        "results": [asdict(r) for r in results],
        "table": rows,
        "parity": parity,
        "fusion": studies.fusion,
        "significance": studies.significance,
        "parity_ok": all(p["ok"] for per in parity.values() for p in per.values()) if parity else None,
        "complete": list(datasets) == [Path(d).name for d in cfg.datasets],
        "model_load_seconds": round(model_seconds, 2),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "files": {
            "markdown": "results.md",
            "csv": "results.csv",
            "ndcg_chart": "ndcg10.png",
            "quality_latency_chart": "quality_latency.png",
            "per_query_csv": "per_query.csv",
            **({"fusion_sweep_chart": "fusion_sweep.png"} if studies.fusion else {}),
        },
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report


def bench_flow_fn(cfg_dict: dict) -> dict:
    """Flow body: parameters travel as a plain dict so Prefect can record them."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    cfg = BenchConfig(**cfg_dict)
    report = run_bench(cfg, log=get_run_logger())
    md = (Path(cfg.out) / "results.md").read_text(encoding="utf-8")
    create_markdown_artifact(
        markdown=md, key="sparsehybrid-bench", description=f"sparsehybrid bench on {', '.join(report['datasets'])}"
    )
    return report


def bench(cfg: BenchConfig) -> dict:
    """Run the benchmark as a Prefect flow (``sparsehybrid-bench``) and return its report."""
    from prefect import flow
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    f = flow(name="sparsehybrid-bench", log_prints=True, validate_parameters=False, persist_result=False)(bench_flow_fn)
    # The ephemeral API's 20 s start-up limit is too short on a busy 2-core machine; raised for
    # this run only (a user's own setting wins), not for the rest of the process.
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ:
        return f(asdict(cfg))
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 120}):
        return f(asdict(cfg))
