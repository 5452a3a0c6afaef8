"""The benchmark's tables: rows per dataset and method, Markdown, CSV and the parity table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .bench_config import MethodResult
from .metrics import METRICS

COLUMNS = ["dataset", "method", *METRICS, "p50_ms", "p95_ms", "queries", "index_docs_per_s"]


def table_rows(results: list[MethodResult], indexing: dict[str, dict]) -> list[dict]:
    """One row per dataset and method, then a ``mean`` row per method (macro average over datasets)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        rows.append(
            {
                "dataset": r.dataset,
                "method": r.method,
                **r.metrics,
                "p50_ms": r.p50_ms,
                "p95_ms": r.p95_ms,
                "queries": r.queries,
                "index_docs_per_s": indexing[r.dataset].get("docs_per_second_measured"),
            }
        )
    datasets = list(dict.fromkeys(r.dataset for r in results))
    if len(datasets) > 1:
        speeds = [indexing[d] for d in datasets]
        total_docs = sum(s.get("built_by", s)["added"] + s.get("built_by", s)["updated"] for s in speeds)
        total_s = sum(s.get("built_by", s)["seconds"] for s in speeds)
        overall = (
            round(total_docs / total_s, 2)
            if total_s and all(s.get("docs_per_second_measured") for s in speeds)
            else None
        )
        for method in dict.fromkeys(r.method for r in results):
            mine = [r for r in rows if r["method"] == method]
            if len(mine) != len(datasets):
                continue
            mean = {
                k: (sum(r[k] for r in mine) / len(mine) if all(r[k] is not None for r in mine) else None)
                for k in [*METRICS, "p50_ms", "p95_ms"]
            }
            rows.append(
                {
                    "dataset": "mean",
                    "method": method,
                    **mean,
                    "queries": sum(r["queries"] for r in mine),
                    "index_docs_per_s": overall,
                }
            )
    return rows


def _fmt(v: Any, key: str) -> str:
    if v is None:
        return "–"
    if key in METRICS:
        return f"{v:.4f}"
    if key in ("p50_ms", "p95_ms", "index_docs_per_s"):
        return f"{v:.1f}"
    return str(v)


#: How the tables mark significance (see :mod:`.significance`).
SIGNIFICANCE_LEGEND = (
    "▲/▼: NDCG@10 significantly better/worse than the collection's best single retriever "
    "(paired t-test and randomisation test both p < 0.05 after Holm's correction)."
)


def markdown_table(rows: list[dict], marks: dict[tuple[str, str], str] | None = None) -> str:
    """The full table; ``marks[(dataset, method)]`` is appended to that row's NDCG@10."""
    marks = marks or {}
    head = ["Dataset", "Method", *METRICS, "p50 ms", "p95 ms", "Queries", "Index docs/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [_fmt(r[k], k) for k in COLUMNS]
        cells[2] += marks.get((r["dataset"], r["method"]), "")
        if r["dataset"] == "mean":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ndcg_pivot(rows: list[dict], marks: dict[tuple[str, str], str] | None = None) -> str:
    """NDCG@10 as methods × datasets (the compact table the README shows)."""
    marks = marks or {}
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    val = {(r["dataset"], r["method"]): r["NDCG@10"] for r in rows}
    lines = ["| NDCG@10 | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for m in methods:
        cells = [f"{val[(d, m)]:.4f}{marks.get((d, m), '')}" if (d, m) in val else "–" for d in datasets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_per_query_csv(path: Path, scores: dict[str, dict[str, dict[str, dict[str, float]]]]) -> None:
    """One row per dataset, method and query with every metric (what significance tests use)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "method", "query_id", *METRICS])
        for dataset, methods in scores.items():
            for method, metrics in methods.items():
                for qid in next(iter(metrics.values()), {}):
                    w.writerow([dataset, method, qid, *(metrics[m][qid] for m in METRICS)])


def significance_text(significance: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| Dataset | Method | baseline | Δ NDCG@10 | t-test p (Holm) | randomisation p (Holm) | significant |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for d, sig in significance.items():
        for m, c in sig.get("comparisons", {}).items():
            lines.append(
                f"| {d} | {m} | {sig['baseline']} | {c['delta']:+.4f} | {c['t_p_holm']:.4f} | "
                f"{c['randomisation_p_holm']:.4f} | {c['mark'] or 'no'} |"
            )
    return "\n".join(lines)


def rerank_significance_text(significance: dict[str, dict[str, Any]]) -> str:
    """Each +Rerank row against the same method without reranking (Holm over the +Rerank rows)."""
    lines = [
        "| Dataset | Method | without rerank | Δ NDCG@10 | t-test p (Holm) | randomisation p (Holm) | significant |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for d, sig in significance.items():
        for m, c in sig.get("reranking", {}).items():
            lines.append(
                f"| {d} | {m} | {c['baseline']} | {c['delta']:+.4f} | {c['t_p_holm']:.4f} | "
                f"{c['randomisation_p_holm']:.4f} | {c['mark'] or 'no'} |"
            )
    return "\n".join(lines)


def tuning_text(fusion: dict[str, dict]) -> str:
    """Per dataset: the recorded setting and the cross-validated NDCG@10 (mean over folds)."""
    lines = [
        "| Dataset | recorded setting | folds | tuned (CV) | plain RRF | best single | tuned − plain | tuned − single |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d, f in fusion.items():
        cv = f["cv_ndcg@10"]
        lines.append(
            f"| {d} | `{f['chosen_text']}` | {f['folds']} | {cv['tuned']:.4f} | {cv['plain_rrf']:.4f} | "
            f"{cv['best_single']:.4f} | {cv['tuned'] - cv['plain_rrf']:+.4f} | {cv['tuned'] - cv['best_single']:+.4f} |"
        )
    return "\n".join(lines)


def unsupervised_text(rows: list[dict]) -> str:
    """Each judgement-free rule against plain RRF (all retrievers) and the best single retriever,
    and whether it qualifies as a default: better than plain RRF on average and never more than
    0.01 below the best single retriever."""
    val = {(r["dataset"], r["method"]): r["NDCG@10"] for r in rows if r["dataset"] != "mean"}
    datasets = list(dict.fromkeys(d for d, _ in val))
    rules = list(dict.fromkeys(m for _, m in val if m.startswith("Unsupervised: ")))
    plain = "Hybrid RRF+BM25" if any(m == "Hybrid RRF+BM25" for _, m in val) else "Hybrid RRF"
    singles = ("BM25", "Sparse", "Dense")
    lines = [
        "| Rule | " + " | ".join(datasets) + " | mean − plain RRF | worst − best single | qualifies |",
        "|---|" + "---:|" * len(datasets) + "---:|---:|---|",
    ]
    for rule in rules:
        gains = [val[(d, rule)] - val[(d, plain)] for d in datasets]
        worst = min(val[(d, rule)] - max(val[(d, s)] for s in singles if (d, s) in val) for d in datasets)
        ok = sum(gains) / len(gains) > 0 and worst >= -0.01
        cells = " | ".join(f"{val[(d, rule)]:.4f}" for d in datasets)
        lines.append(
            f"| {rule[14:]} | {cells} | {sum(gains) / len(gains):+.4f} | {worst:+.4f} | {'yes' if ok else 'no'} |"
        )
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})


def parity_text(parity: dict[str, dict]) -> str:
    lines = [
        "| Dataset | Retriever | ours NDCG@10 | sentence-transformers NDCG@10 | difference | tolerance | ok |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for d, per in parity.items():
        for name, p in per.items():
            lines.append(
                f"| {d} | {name} | {p['ours_ndcg@10']:.4f} | {p['sentence_transformers_ndcg@10']:.4f} | {p['difference']:+.4f} | {p['tolerance']} | {'yes' if p['ok'] else '**NO**'} |"
            )
    return "\n".join(lines)


# -- the flow ----------------------------------------------------------------------------------
