"""The benchmark's fusion stage: tuned fusion (cross-validated), judgement-free rules, sweeps.

Works on the single-retriever runs the benchmark already made (each retriever's top
``candidates`` per query), so no query is searched twice: fusing those runs is exactly what the
searcher does for a hybrid query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..fusion import FusionSetting
from .fusion_tuning import (
    OBJECTIVE,
    TuningResult,
    cross_validated_run,
    fused_run,
    tune,
    unsupervised_settings,
)
from .metrics import Qrels, Run, evaluate

#: Benchmark method name -> retriever name.
SINGLE_METHODS = {"BM25": "bm25", "Sparse": "sparse", "Dense": "dense"}
TUNED_METHOD = "Tuned fusion (CV)"
RRF_K_SWEEP = (1, 5, 10, 20, 40, 60, 100, 200)
DENSE_WEIGHT_SWEEP = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def retriever_runs(method_runs: Mapping[str, Run]) -> dict[str, Run]:
    """The single-retriever runs among the benchmark's method runs, keyed by retriever."""
    return {r: method_runs[m] for m, r in SINGLE_METHODS.items() if m in method_runs}


def sweep(runs: Mapping[str, Run], qrels: Qrels, queries: list[str], limit: int) -> dict[str, list[list[float]]]:
    """Mean NDCG@10 of RRF over all retrievers against k (equal weights) and against the dense
    weight (k = 60, the others weigh 1)."""
    out: dict[str, list[list[float]]] = {"rrf_k": []}
    for k in RRF_K_SWEEP:
        run = fused_run(runs, FusionSetting("rrf", k, {}), queries, limit)
        out["rrf_k"].append([k, evaluate(qrels, run, queries)[OBJECTIVE]])
    if "dense" in runs:
        out["dense_weight"] = []
        for w in DENSE_WEIGHT_SWEEP:
            run = fused_run(runs, FusionSetting("rrf", 60, {"dense": w}), queries, limit)
            out["dense_weight"].append([w, evaluate(qrels, run, queries)[OBJECTIVE]])
    return out


def study_fusion(
    method_runs: Mapping[str, Run],
    qrels: Qrels,
    queries: list[str],
    *,
    folds: int,
    seed: int,
    limit: int,
    log=None,
) -> tuple[dict[str, Run], TuningResult, dict[str, Any]]:
    """Tuned (cross-validated) and judgement-free fusion runs, plus the report of both.

    Returns the new runs by method name, the tuning result (its ``chosen`` setting is the one
    to record) and a JSON-safe summary with the sweeps.
    """
    runs = retriever_runs(method_runs)
    result = tune(runs, qrels, queries, folds=folds, seed=seed, progress=log.info if log else None)
    new_runs = {TUNED_METHOD: cross_validated_run(runs, result, limit)}
    rules = unsupervised_settings(runs, queries)
    for name, setting in rules.items():
        new_runs[f"Unsupervised: {name}"] = fused_run(runs, setting, queries, limit)
    summary = {
        **result.summary(),
        "unsupervised": {name: s.to_dict() for name, s in rules.items()},
        "sweep": sweep(runs, qrels, queries, limit),
    }
    return new_runs, result, summary
