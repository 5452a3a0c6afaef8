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
            mean = {k: sum(r[k] for r in mine) / len(mine) for k in [*METRICS, "p50_ms", "p95_ms"]}
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


def markdown_table(rows: list[dict]) -> str:
    head = ["Dataset", "Method", *METRICS, "p50 ms", "p95 ms", "Queries", "Index docs/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [_fmt(r[k], k) for k in COLUMNS]
        if r["dataset"] == "mean":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ndcg_pivot(rows: list[dict]) -> str:
    """NDCG@10 as methods × datasets (the compact table the README shows)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    val = {(r["dataset"], r["method"]): r["NDCG@10"] for r in rows}
    lines = ["| NDCG@10 | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{val[(d, m)]:.4f}" if (d, m) in val else "–" for d in datasets) + " |")
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
