"""Encoded points in a Parquet file (``parquet:///path``): encode on one machine, load on another.

One row per point: the payload fields as columns (``metadata`` as JSON text), the learned-sparse
vector as two list columns, the dense vector as a float32 list. The :class:`CollectionSchema`
(models, dimensions, BM25 settings, recorded fusion) travels in the file's key-value metadata,
so loading the file into any store needs nothing else. Reading and writing go a row group at a
time, so memory stays bounded by the batch size, whatever the file size.

A file being written is ``PATH.partial`` until it is complete, then renamed: a killed copy never
leaves a file that looks whole, and running the copy again starts the file over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..types import PointRecord, SparseVector
from .base import CollectionSchema, StoreError, record_from_stored

SCHEME = "parquet"
SCHEMA_KEY = b"sparsehybrid.schema"
PARTIAL_SUFFIX = ".partial"


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover  (pyarrow is in the sources extra)
        raise StoreError("parquet:// needs pyarrow: pip install 'sparsehybrid[sources]'") from None
    return pa, pq


def is_parquet_url(url: str) -> bool:
    return url.lower().startswith(f"{SCHEME}://")


def parquet_path(url: str) -> Path:
    """``parquet:///abs/path.parquet`` or ``parquet://relative/path.parquet`` -> the path."""
    rest = url.split("://", 1)[1]
    if not rest or "?" in rest or "#" in rest:
        raise ValueError(f"{url!r}: a parquet URL is parquet://PATH (no options), e.g. parquet:///data/points.parquet")
    return Path(rest)


def arrow_schema(dense_dim: int | None) -> Any:
    pa, _ = _pa()
    fields = [
        pa.field("id", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("chunk", pa.int32()),
        pa.field("n_chunks", pa.int32()),
        pa.field("start", pa.int64()),
        pa.field("end", pa.int64()),
        pa.field("text", pa.large_string()),
        pa.field("title", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("sparse_indices", pa.list_(pa.int32())),
        pa.field("sparse_values", pa.list_(pa.float32())),
        pa.field("dense", pa.list_(pa.float32(), int(dense_dim)) if dense_dim else pa.list_(pa.float32())),
    ]
    return pa.schema(fields)


class ParquetPointsWriter:
    """Appends batches of records to ``PATH.partial``; :meth:`finish` renames it to ``PATH``."""

    def __init__(self, path: Path, schema: CollectionSchema):
        _, pq = _pa()
        if path.exists():
            raise StoreError(f"parquet://{path} exists already; remove it or choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self.schema = schema
        self._arrow = arrow_schema(schema.dense_dim).with_metadata({SCHEMA_KEY: json.dumps(schema.to_dict())})
        self._writer = pq.ParquetWriter(str(self.partial), self._arrow, compression="zstd")
        self.written = 0

    @property
    def url(self) -> str:
        return f"{SCHEME}://{self.path}"

    def write(self, records: Sequence[PointRecord]) -> int:
        pa, _ = _pa()
        columns: dict[str, list[Any]] = {name: [] for name in self._arrow.names}
        for r in records:
            c = r.chunk
            columns["id"].append(r.id)
            columns["doc_id"].append(c.doc_id)
            columns["chunk"].append(c.chunk)
            columns["n_chunks"].append(c.n_chunks)
            columns["start"].append(c.start)
            columns["end"].append(c.end)
            columns["text"].append(c.text)
            columns["title"].append(c.title)
            columns["metadata"].append(json.dumps(c.metadata, ensure_ascii=False))
            columns["content_hash"].append(c.content_hash)
            sparse = r.sparse if r.sparse is not None else None
            columns["sparse_indices"].append(list(sparse.indices) if sparse is not None else None)
            columns["sparse_values"].append(list(sparse.values) if sparse is not None else None)
            columns["dense"].append([float(x) for x in r.dense] if r.dense is not None else None)
        self._writer.write_table(pa.Table.from_pydict(columns, schema=self._arrow))
        self.written += len(records)
        return len(records)

    def finish(self) -> None:
        """Close the file and give it its final name (only a complete file has it)."""
        self._writer.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Close and remove the partial file (a failed or interrupted copy)."""
        try:
            self._writer.close()
        finally:
            self.partial.unlink(missing_ok=True)


class ParquetPoints:
    """A complete points file, read a row group at a time: a ``sparsehybrid copy`` source."""

    def __init__(self, path: Path):
        _, pq = _pa()
        if not path.is_file():
            raise StoreError(f"parquet://{path} does not exist (a copy writes PATH.partial until it completes)")
        self.path = path
        try:
            self._file = pq.ParquetFile(str(path))
        except Exception as exc:  # pyarrow raises ArrowInvalid and friends
            raise StoreError(f"parquet://{path} is not a Parquet file: {exc}") from None
        meta = self._file.schema_arrow.metadata or {}
        if SCHEMA_KEY not in meta:
            raise StoreError(f"parquet://{path} was not written by sparsehybrid copy (no schema in its metadata)")
        self._schema = CollectionSchema.from_dict(json.loads(meta[SCHEMA_KEY]))

    @property
    def url(self) -> str:
        return f"{SCHEME}://{self.path}"

    @property
    def schema(self) -> CollectionSchema:
        return self._schema

    def count(self) -> int:
        return int(self._file.metadata.num_rows)

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        for batch in self._file.iter_batches(batch_size=batch_size):
            yield self._records(batch.to_pylist())

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]:
        """The given points (one pass over the file, keeping only those)."""
        wanted = set(point_ids)
        found: list[PointRecord] = []
        for batch in self._file.iter_batches(batch_size=4096, columns=None):
            ids = batch.column("id").to_pylist()
            keep = [i for i, pid in enumerate(ids) if pid in wanted]
            if keep:
                found.extend(self._records(batch.take(keep).to_pylist()))
        return found

    def _records(self, rows: list[dict[str, Any]]) -> list[PointRecord]:
        out = []
        for row in rows:
            where = f"parquet://{self.path}: point {row.get('id')!r}"
            try:
                metadata = json.loads(row["metadata"]) if row["metadata"] else {}
                sparse = (
                    SparseVector(row["sparse_indices"], row["sparse_values"])
                    if row["sparse_indices"] is not None
                    else None
                )
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{where}: unreadable vector or metadata: {exc}") from None
            out.append(record_from_stored({**row, "metadata": metadata}, sparse, row["dense"], self._schema))
        return out

    def close(self) -> None:
        self._file.close()
