"""How much a trained reranker gives, and costs, by rerank depth: NDCG@10 against the hybrid
first stage it reorders (paired tests, Holm-corrected over the depths) and the reranker's time
per query, measured on the same candidates.

Used by ``benchmarks/rerank.py`` (leave-one-collection-out and in-collection cross-validation);
the candidates come from :func:`.reranker_training.prepare`, so the first stage is the same
hybrid for training, evaluation and the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .beir import BeirDataset
from .fusion_tuning import OBJECTIVE
from .metrics import Run, per_query
from .reranker_training import Candidates, reorder_head
from .significance import compare_to_baseline

#: Depths the study reranks (candidates rescored per query).
DEPTHS = (10, 20, 50, 100)
BASELINE = "Hybrid"


@dataclass
class DepthResult:
    """One collection: per-query NDCG@10 of the hybrid and of each depth, and rerank latencies."""

    collection: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=dict)


def method_name(depth: int) -> str:
    return f"Hybrid+Rerank@{depth}"


def rerank_at_depths(
    reranker, ds: BeirDataset, qids: Sequence[str], candidates: Candidates, depths: Sequence[int] = DEPTHS
) -> tuple[dict[str, Run], dict[str, list[float]]]:
    """Runs (hybrid, and its top ``depth`` reordered by ``reranker.score``) and the reranker's time
    per query (ms) at each depth: each depth is scored afresh, as a search would."""
    runs: dict[str, Run] = {BASELINE: {q: candidates.runs[q] for q in qids}}
    latency: dict[str, list[float]] = {}
    for depth in depths:
        name = method_name(depth)
        run: Run = {}
        times: list[float] = []
        for qid in qids:
            ranked = candidates.runs[qid]
            head = ranked[:depth]
            t = time.perf_counter()
            scores = reranker.score(ds.queries[qid], [candidates.texts[d] for d, _ in head])
            times.append((time.perf_counter() - t) * 1000)
            run[qid] = reorder_head(ranked, [float(x) for x in scores])
        runs[name] = run
        latency[name] = times
    return runs, latency


def depth_result(collection: str, ds: BeirDataset, runs: dict[str, Run], latency: dict[str, list[float]]):
    """Per-query NDCG@10 of every run in ``runs`` (qrels of ``ds``)."""
    qids = list(runs[BASELINE])
    out = DepthResult(collection, latency_ms={k: list(v) for k, v in latency.items()})
    for name, run in runs.items():
        out.scores[name] = per_query(ds.qrels, run, qids)[OBJECTIVE]
    return out


def summarise(result: DepthResult, seed: int = 0) -> list[dict]:
    """Table rows: the hybrid, then each depth with its delta, significance mark and latency."""
    qids = list(result.scores[BASELINE])
    comparisons = compare_to_baseline(result.scores, BASELINE, qids, seed=seed) if len(qids) >= 2 else {}
    rows = []
    for name, scores in result.scores.items():
        c = comparisons.get(name)
        lat = result.latency_ms.get(name, [])
        rows.append(
            {
                "collection": result.collection,
                "method": name,
                "queries": len(qids),
                "NDCG@10": statistics.fmean(scores[q] for q in qids),
                "delta": c.delta if c else 0.0,
                "p_t_holm": c.t_p_holm if c else None,
                "p_randomisation_holm": c.randomisation_p_holm if c else None,
                "mark": c.mark if c else "",
                "rerank_ms_p50": statistics.median(lat) if lat else None,
                "rerank_ms_mean": statistics.fmean(lat) if lat else None,
            }
        )
    return rows


def markdown(rows: Sequence[dict]) -> str:
    """The depth table: NDCG@10 (Δ against the hybrid, ▲/▼ significant after Holm) and latency."""
    lines = [
        "| collection | method | queries | NDCG@10 | Δ vs hybrid | p (t, Holm) | rerank ms/query p50 | mean |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = "" if r["p_t_holm"] is None else f"{r['p_t_holm']:.3f}"
        p50 = "" if r["rerank_ms_p50"] is None else f"{r['rerank_ms_p50']:.1f}"
        mean = "" if r["rerank_ms_mean"] is None else f"{r['rerank_ms_mean']:.1f}"
        delta = "" if r["method"] == BASELINE else f"{r['delta']:+.4f}{r['mark']}"
        lines.append(
            f"| {r['collection']} | {r['method']} | {r['queries']} | {r['NDCG@10']:.4f} | {delta} | {p} | {p50} | {mean} |"
        )
    return "\n".join(lines)


def mean_rows(rows: Sequence[dict], label: str) -> list[dict]:
    """Per method, the mean over collections (unweighted: each collection counts once)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        lat = [r["rerank_ms_mean"] for r in mine if r["rerank_ms_mean"] is not None]
        out.append(
            {
                "collection": label,
                "method": method,
                "queries": sum(r["queries"] for r in mine),
                "NDCG@10": statistics.fmean(r["NDCG@10"] for r in mine),
                "delta": statistics.fmean(r["delta"] for r in mine),
                "p_t_holm": None,
                "p_randomisation_holm": None,
                "mark": "",
                "rerank_ms_p50": None,
                "rerank_ms_mean": statistics.fmean(lat) if lat else None,
            }
        )
    return out
