"""Reading OpenSearch and Elasticsearch answers: hits as scored points, and the failures a 200
response can still carry (bulk items, shards, delete-by-query, mget, ``_msearch`` items) as one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import PointRecord, ScoredPoint
from .base import DENSE, SPARSE, CollectionSchema, record_from_stored
from .search_engine_format import FULL_TEXT, PAYLOAD_FIELDS, features_to_sparse


def hit_to_point(hit: Mapping[str, Any], score: float, with_sparse: bool = False) -> ScoredPoint:
    source = dict(hit.get("_source") or {})
    sparse = None
    if with_sparse:
        sparse = features_to_sparse(source.get(SPARSE) or {})
    payload = {k: source[k] for k in PAYLOAD_FIELDS if k in source}
    return ScoredPoint(id=str(hit["_id"]), score=float(score), payload=payload, sparse=sparse)


#: ``_source`` filter for reading records with their vectors (``sparsehybrid copy``).
ENCODED_SOURCE = {"excludes": [FULL_TEXT]}


def hit_to_record(hit: Mapping[str, Any], schema: CollectionSchema) -> PointRecord:
    """A hit read with :data:`ENCODED_SOURCE` as the record that wrote it (``_source`` keeps the
    weights as sent, not Lucene's truncated copies)."""
    source = hit.get("_source") or {}
    sparse = features_to_sparse(source[SPARSE]) if source.get(SPARSE) else None
    payload = {k: source[k] for k in PAYLOAD_FIELDS if k in source}
    return record_from_stored(payload, sparse, source.get(DENSE), schema)


def bulk_failures(response: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(point id, status, reason) of each failed bulk item (a delete of a missing id is fine)."""
    out: list[tuple[str, int, str]] = []
    if not response.get("errors"):
        return out
    for item in response.get("items", []):
        ((action, result),) = item.items()
        status = int(result.get("status", 0))
        if status >= 300 and not (action == "delete" and status == 404):
            err = result.get("error") or {}
            reason = f"{err.get('type', 'error')}: {err.get('reason', '')}" if isinstance(err, Mapping) else str(err)
            out.append((str(result.get("_id")), status, reason))
    return out


def shard_failures(response: Mapping[str, Any]) -> str | None:
    """Why some shards failed a search or count (then its hits are incomplete); None when none did."""
    shards = response.get("_shards") or {}
    if not shards.get("failed"):
        return None
    first = (shards.get("failures") or [{}])[0]
    reason = first.get("reason") or {}
    text = f"{reason.get('type', 'error')}: {reason.get('reason', '')}" if isinstance(reason, Mapping) else str(reason)
    return f"{shards['failed']} of {shards.get('total', '?')} shard(s) failed; first: {text}"


def delete_by_query_failures(response: Mapping[str, Any]) -> str | None:
    """Why a delete-by-query left documents behind (failures[], version conflicts); None when it did not."""
    failures = response.get("failures") or []
    conflicts = int(response.get("version_conflicts") or 0)
    if not failures and not conflicts:
        return None
    parts = []
    if failures:
        cause = failures[0].get("cause") or {}
        parts.append(f"{len(failures)} failure(s); first: {cause.get('type', 'error')}: {cause.get('reason', '')}")
    if conflicts:
        parts.append(f"{conflicts} version conflict(s) (documents changed while deleting)")
    return "; ".join(parts)


def mget_errors(docs: Sequence[Mapping[str, Any]]) -> str | None:
    """Why some documents of an mget could not be read (not the same as not found); None when all could."""
    failed = [d for d in docs if d.get("error")]
    if not failed:
        return None
    err = failed[0]["error"]
    text = f"{err.get('type', 'error')}: {err.get('reason', '')}" if isinstance(err, Mapping) else str(err)
    return f"{len(failed)} document(s) could not be read; first: {failed[0].get('_id')} {text}"


def cosine_from_score(score: float) -> float:
    """Both engines report cosine kNN scores as (1 + cos) / 2; give back the cosine."""
    return 2.0 * float(score) - 1.0


def hits_to_points(response: Mapping[str, Any], limit: int) -> list[ScoredPoint]:
    """The scored points of a search response, at most ``limit``."""
    return [hit_to_point(h, h["_score"]) for h in response["hits"]["hits"]][: int(limit)]


def error_line(error: Any) -> str:
    """One line from an ``_msearch`` item's error (an object with type and reason, or a string)."""
    if isinstance(error, Mapping):
        cause = (error.get("root_cause") or [error])[0]
        return f"{cause.get('type', 'error')}: {cause.get('reason', '')}"[:300]
    return str(error)[:300]
