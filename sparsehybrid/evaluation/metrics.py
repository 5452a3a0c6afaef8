"""Retrieval metrics (through ``ir-measures``, i.e. trec_eval) and TREC run files.

Metrics are never re-implemented here: ``ir-measures`` picks, per measure, a provider that
supports it exactly (``pytrec_eval``, the reference trec_eval code, for nDCG/AP/R; the MS MARCO
evaluator for RR@10, which trec_eval cannot cut off), so numbers match what other papers and tools
report. Evaluation orders a run by score, so a run file written here and read back evaluates to
exactly the same numbers.

A ``Run`` is ``{query id: [(doc id, score), ...]}`` in the system's rank order; ``Qrels`` is
``{query id: {doc id: gain}}`` where gain <= 0 means judged non-relevant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

Run = dict[str, list[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, int]]

#: Reported name -> ir-measures measure string (parsed lazily, so importing this module is cheap).
METRICS: dict[str, str] = {
    "NDCG@10": "nDCG@10",
    "MRR@10": "RR@10",
    "MAP@100": "AP@100",
    "Recall@100": "R@100",
}


def _measures(metrics: Mapping[str, str]):
    import ir_measures

    return {name: ir_measures.parse_measure(spec) for name, spec in metrics.items()}


def per_query(
    qrels: Qrels,
    run: Mapping[str, Sequence[tuple[str, float]]],
    queries: Iterable[str] | None = None,
    metrics: Mapping[str, str] = METRICS,
) -> dict[str, dict[str, float]]:
    """``{metric: {query id: value}}`` over ``queries`` (default: every query in ``qrels``).

    A query the run has no results for scores 0 (trec_eval would silently drop it, flattering
    a system that returns nothing).
    """
    import ir_measures

    qids = list(queries) if queries is not None else list(qrels)
    missing = [q for q in qids if q not in qrels]
    if missing:
        raise ValueError(f"no relevance judgements for query {missing[0]!r} ({len(missing)} such queries)")
    wanted = set(qids)
    measures = _measures(metrics)
    by_measure = {m: name for name, m in measures.items()}
    qrels_sub = {q: {d: int(g) for d, g in qrels[q].items()} for q in qids}
    run_sub = {q: {d: float(s) for d, s in run.get(q, [])} for q in qids if run.get(q)}
    out: dict[str, dict[str, float]] = {name: {q: 0.0 for q in qids} for name in metrics}
    if run_sub:
        # Not ir_measures.pytrec_eval directly: that provider silently ignores RR's cutoff.
        evaluator = ir_measures.evaluator(list(measures.values()), qrels_sub)
        for m in evaluator.iter_calc(run_sub):
            if m.query_id in wanted:
                out[by_measure[m.measure]][m.query_id] = float(m.value)
    return out


def evaluate(
    qrels: Qrels,
    run: Mapping[str, Sequence[tuple[str, float]]],
    queries: Iterable[str] | None = None,
    metrics: Mapping[str, str] = METRICS,
) -> dict[str, float]:
    """Mean of each metric over ``queries`` (default: every query in ``qrels``)."""
    pq = per_query(qrels, run, queries, metrics)
    return {name: (sum(v.values()) / len(v) if v else float("nan")) for name, v in pq.items()}


def binarize(qrels: Qrels) -> dict[str, dict[str, int]]:
    """Gain > 0 -> 1, else 0: the relevance model of sentence-transformers' IR evaluators."""
    return {q: {d: int(g > 0) for d, g in docs.items()} for q, docs in qrels.items()}


def write_trec_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Path:
    """Write ``qid Q0 docid rank score tag`` lines (the format trec_eval and ir-measures read)."""
    path = Path(path)
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be a non-empty string without whitespace, got {tag!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for qid, ranked in run.items():
            if not qid or any(c.isspace() for c in qid):
                raise ValueError(
                    f"query id {qid!r} cannot be written to a TREC run file (empty or contains whitespace)"
                )
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                if not doc_id or any(c.isspace() for c in doc_id):
                    raise ValueError(
                        f"query {qid}: document id {doc_id!r} cannot be written to a TREC run file (empty or contains whitespace)"
                    )
                if not math.isfinite(score):
                    raise ValueError(f"query {qid}, document {doc_id}: score {score!r} is not finite")
                fh.write(f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n")
    return path


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file back into a ``Run`` (each query's list in rank order)."""
    path = Path(path)
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise ValueError(
                    f"{path.name}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}"
                )
            qid, _, doc_id, rank, score, _tag = parts
            try:
                rows.setdefault(qid, []).append((int(rank), doc_id, float(score)))
            except ValueError:
                raise ValueError(f"{path.name}:{lineno}: field 'rank' or 'score' is not a number") from None
    return {q: [(d, s) for _, d, s in sorted(r, key=lambda t: t[0])] for q, r in rows.items()}
