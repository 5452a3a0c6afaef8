"""The dead-letter file: every record a run rejected, one JSON object per line.

An hourly job must say exactly what it did not index. Each line holds the record (its id, or
``file:line`` when it has no usable id), the field at fault, the reason, when the run started
(so repeated runs can append to one file and still be told apart) and, where the source had
one, the record itself as read (``source``: the JSONL line, or the CSV/Parquet row as JSON)::

    {"record": "doc-7", "field": "text", "reason": "is empty or whitespace only",
     "at": "2026-01-05T10:00:00+00:00", "source": "{\"_id\": \"doc-7\", \"text\": \"  \"}"}

To replay, fix the records and index them again: ``jq -r .source dead.jsonl > fixed.jsonl``,
edit ``fixed.jsonl``, then ``sparsehybrid index fixed.jsonl``. Lines are ASCII (``\\u``
escapes), so even a record with invalid characters is written safely.

Appends are line-at-a-time and flushed, so a run killed mid-write leaves at worst one partial
last line; :func:`read_dead_letter` skips such a line instead of failing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .sources import Rejected


def run_timestamp(when: datetime | None = None) -> str:
    """ISO-8601 UTC time of a run's start (seconds precision)."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def dead_letter_line(rejected: Rejected, at: str, **context: Any) -> str:
    """One JSONL line (with its newline) for a rejected record; ``context`` adds e.g. a flow-run id."""
    row: dict[str, Any] = {"record": rejected.record, "field": rejected.field, "reason": rejected.reason, "at": at}
    if rejected.raw is not None:
        row["source"] = rejected.raw
    row.update({k: v for k, v in context.items() if v is not None})
    return json.dumps(row, ensure_ascii=True, default=str) + "\n"


def write_dead_letter(
    path: str | os.PathLike[str], rejected: Iterable[Rejected], *, at: str | None = None, **context: Any
) -> int:
    """Append every rejected record to ``path`` (created with its folder); returns how many.

    Nothing is created when there is nothing to write.
    """
    rows = list(rejected)
    if not rows:
        return 0
    at = at or run_timestamp()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(dead_letter_line(r, at, **context))
        fh.flush()
        os.fsync(fh.fileno())
    return len(rows)


def read_dead_letter(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of a dead-letter file (a torn last line from a crash is skipped)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
