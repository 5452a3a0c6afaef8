"""Query parts OpenSearch and Elasticsearch share: metadata filters as ``bool`` filter clauses,
which ``_source`` fields a search reads, and whether fusion weights differ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import SPARSE
from .filters import Condition
from .search_engine_format import INTERNAL_FIELDS


def filter_clauses(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    """Parsed conditions -> ``term`` / ``terms`` / ``range`` clauses for a bool ``filter``."""
    out: list[dict[str, Any]] = []
    for c in conditions:
        field = f"metadata.{c.field}"
        if c.op == "eq":
            out.append({"term": {field: c.value}})
        elif c.op == "in":
            out.append({"terms": {field: list(c.value)}})
        else:
            out.append({"range": {field: dict(c.value)}})
    return out


def with_filter(query: dict[str, Any], conditions: Sequence[Condition]) -> dict[str, Any]:
    """Wrap a scoring query in a bool whose ``filter`` clauses restrict but never score."""
    clauses = filter_clauses(conditions)
    if not clauses:
        return query
    return {"bool": {"must": [query], "filter": clauses}}


def filter_query(conditions: Sequence[Condition]) -> dict[str, Any]:
    clauses = filter_clauses(conditions)
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def source_filter(with_sparse: bool) -> dict[str, Any]:
    return {"excludes": [f for f in INTERNAL_FIELDS if not (with_sparse and f == SPARSE)]}


def unequal(weights: Sequence[float]) -> bool:
    """Whether RRF weights change the ranking (equal weights only scale every score)."""
    return any(w != weights[0] for w in weights)
