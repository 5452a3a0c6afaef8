"""Copy a collection between stores without re-encoding (``sparsehybrid copy``).

Every backend keeps the encoded vectors it was given, so moving an index from the embedded store
to a Qdrant server, OpenSearch or Elasticsearch (or into a Parquet file of encoded points, and
back) only reads points and writes them again: payloads, content hashes, sparse and dense
vectors, and the collection schema with its recorded fusion. BM25 needs no copying: each backend
derives it from the text, with the schema's BM25 settings.

Into a new embedded store of the same storage mode, the source's engine files are copied as they
are (:class:`~.qdrant_edge.EdgeShardCopy`): the disk's speed, indexes included. Everywhere else,
streaming a batch at a time keeps memory flat. Point ids are deterministic, so an interrupted copy
run again writes the same points again, never duplicates; it skips the points the destination
already holds with the same content hash. At the end the copy is verified: counts, a sample of
points read back from the destination (payload and vectors equal), and, where both stores are the
same engine, the same top-10 for sample queries.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..types import PointRecord
from .base import BM25, CollectionSchema, StoreError, VectorStore
from .parquet_points import ParquetPoints, ParquetPointsWriter, is_parquet_url, parquet_path
from .registry import open_store

#: Relative tolerance for vector values read back: float32 storage of float64 input.
VECTOR_RTOL = 1e-6
#: The schema fields that must agree: what the stored vectors and BM25 mean.
ENCODING_FIELDS = ("sparse_model", "sparse_dim", "dense_model", "dense_dim", "bm25", "bm25_language")


class IncompatibleDestinationError(StoreError):
    """The destination holds a collection built with other encoders or BM25 settings."""


class CopyVerificationError(StoreError):
    """The destination does not hold what was copied into it."""


class PointSource(Protocol):
    """What a copy reads: a store or a Parquet file of encoded points."""

    @property
    def url(self) -> str: ...

    @property
    def schema(self) -> CollectionSchema | None: ...

    def count(self) -> int: ...

    def iter_records(self, batch_size: int = 1000) -> Any: ...

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]: ...

    def close(self) -> None: ...


@dataclass
class CopyReport:
    """What a copy did and what its verification found."""

    source: str
    destination: str
    total: int
    copied: int = 0
    skipped: int = 0
    seconds: float = 0.0
    optimize_seconds: float = 0.0
    destination_count: int = 0
    vectors_checked: int = 0
    #: Sample queries whose top-10 matched; None where the engines differ (rankings may too).
    queries_checked: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def points_per_second(self) -> float:
        return (self.copied + self.skipped) / self.seconds if self.seconds > 0 else 0.0


def open_source(url: str) -> PointSource:
    if is_parquet_url(url):
        return ParquetPoints(parquet_path(url))
    store = open_store(url)
    if store.schema is None:
        store.close()
        raise StoreError(f"{store.url} holds no collection to copy")
    return store


def check_destination(source: CollectionSchema, dest: CollectionSchema, dest_url: str) -> None:
    """Refuse (one line) a destination whose collection was built with other encoders or BM25."""
    diffs = [
        f"{name} {getattr(dest, name)!r} (source {getattr(source, name)!r})"
        for name in ENCODING_FIELDS
        if getattr(dest, name) != getattr(source, name)
    ]
    if diffs:
        raise IncompatibleDestinationError(
            f"{dest_url} holds a collection built differently: {', '.join(diffs)}; copy into a new collection"
        )


def copy_collection(
    source_url: str,
    dest_url: str,
    *,
    batch_size: int = 1000,
    sample: int = 32,
    queries: int = 5,
    optimize: bool = True,
    files: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> CopyReport:
    """Copy every point of ``source_url`` into ``dest_url`` and verify the result.

    ``files``: into a new embedded store, copy the engine's files rather than its points (False:
    point by point, as between any other stores).

    ``on_progress(done, total)`` is called after each batch. ``sample`` points are read back from
    the destination and compared; ``queries`` of them are searched in both stores when they are
    the same engine. Raises :class:`IncompatibleDestinationError` before writing anything when
    the destination's collection differs, :class:`CopyVerificationError` when verification fails.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if source_url.rstrip("/") == dest_url.rstrip("/"):
        raise ValueError("the source and the destination are the same")
    source = open_source(source_url)
    try:
        schema = source.schema
        assert schema is not None  # open_source refuses an empty store
        if is_parquet_url(dest_url):
            return _copy_to_parquet(source, schema, dest_url, batch_size, sample, on_progress)
        dest = open_store(dest_url)
        try:
            whole = whole_collection_files(source, dest) if files else None
            if whole is not None:
                return _copy_files(source, dest, whole, sample, queries, optimize, on_progress)
            return _copy_to_store(source, schema, dest, batch_size, sample, queries, optimize, on_progress)
        finally:
            dest.close()
    finally:
        source.close()


def _copy_to_store(
    source: PointSource,
    schema: CollectionSchema,
    dest: VectorStore,
    batch_size: int,
    sample: int,
    queries: int,
    optimize: bool,
    on_progress: Callable[[int, int], None] | None,
) -> CopyReport:
    existing = dest.schema
    if existing is not None:
        check_destination(schema, existing, dest.url)
    dest.ensure_schema(schema)
    if existing is not None and schema.fusion and existing.fusion != schema.fusion:
        dest.save_fusion(schema.fusion)
    resuming = existing is not None and dest.count() > 0
    report = CopyReport(source.url, dest.url, total=source.count())
    sampler = Sampler(report.total, sample)
    native = same_engine_points(source, dest)
    batches = native.read(batch_size) if native else source.iter_records(batch_size)
    t0 = time.perf_counter()
    for batch in prefetched(batches):
        ids = [str(p.id) for p in batch]
        todo = _missing(dest, batch, ids) if resuming else batch
        if native:
            native.write(todo)
        else:
            dest.upsert(todo)
        report.copied += len(todo)
        report.skipped += len(batch) - len(todo)
        sampler.offer(ids)
        if on_progress is not None:
            on_progress(report.copied + report.skipped, report.total)
    dest.flush()
    report.seconds = time.perf_counter() - t0
    return _optimize_and_verify(report, source, dest, sampler.ids, queries, optimize, resuming)


def _optimize_and_verify(
    report: CopyReport,
    source: PointSource,
    dest: VectorStore,
    sample_ids: list[str],
    queries: int,
    optimize: bool,
    resuming: bool,
) -> CopyReport:
    """The end of a copy into a store: optimize it (timed apart), then check its count (exact
    unless it already held points), the sampled points, and same-engine rankings."""
    if optimize:
        t1 = time.perf_counter()
        dest.optimize()
        report.optimize_seconds = time.perf_counter() - t1
    report.destination_count = dest.count()
    _verify_count(report, exact=not resuming)
    expected = source.get_records(sample_ids)
    report.vectors_checked = verify_sample(expected, dest.get_records(sample_ids), dest.url)
    if isinstance(source, VectorStore) and type(source) is type(dest) and not resuming:
        report.queries_checked = verify_rankings(source, dest, expected[:queries])
    elif not isinstance(source, VectorStore) or type(source) is not type(dest):
        report.notes.append("rankings not compared: the destination is another engine")
    return report


class EnginePoints(Protocol):
    """Points moved in the engine's own form between two stores of one engine: no conversion to
    records and back, and derived vectors (BM25) carried instead of computed again."""

    def read(self, batch_size: int) -> Iterator[list[Any]]: ...

    def write(self, points: list[Any]) -> None: ...


def same_engine_points(source: PointSource, dest: VectorStore) -> EnginePoints | None:
    """The engine-form path when the destination can take the source's points as they are."""
    native = getattr(source, "engine_points_to", None)
    return native(dest) if native is not None else None


class CollectionFiles(Protocol):
    """A whole collection copied as its engine's files into a new store of the same engine."""

    def point_ids(self, batch_size: int = ...) -> Iterator[list[str]]: ...

    def run(self, on_bytes: Callable[[int, int], None] | None = None) -> int: ...


def whole_collection_files(source: PointSource, dest: VectorStore) -> CollectionFiles | None:
    """The file copy, when the destination is new and of the source's engine and storage mode."""
    files = getattr(source, "shard_copy_to", None)
    return files(dest) if files is not None else None


def _copy_files(
    source: PointSource,
    dest: VectorStore,
    files: CollectionFiles,
    sample: int,
    queries: int,
    optimize: bool,
    on_progress: Callable[[int, int], None] | None,
) -> CopyReport:
    t0 = time.perf_counter()
    report = CopyReport(source.url, dest.url, total=source.count())
    sampler = Sampler(report.total, sample)
    for ids in files.point_ids():
        sampler.offer(ids)

    def progress(done: int, total: int) -> None:  # bytes, shown as the share of the points
        if on_progress is not None:
            on_progress(report.total * done // max(total, 1), report.total)

    copied = files.run(progress)
    report.copied = report.total
    report.seconds = time.perf_counter() - t0
    report.notes.append(f"copied the engine's files ({copied / 2**20:,.0f} MiB), indexes included")
    if on_progress is not None:
        on_progress(report.total, report.total)
    return _optimize_and_verify(report, source, dest, sampler.ids, queries, optimize, resuming=False)


def _copy_to_parquet(
    source: PointSource,
    schema: CollectionSchema,
    dest_url: str,
    batch_size: int,
    sample: int,
    on_progress: Callable[[int, int], None] | None,
) -> CopyReport:
    writer = ParquetPointsWriter(parquet_path(dest_url), schema)
    report = CopyReport(source.url, writer.url, total=source.count())
    sampler = Sampler(report.total, sample)
    t0 = time.perf_counter()
    try:
        for batch in prefetched(source.iter_records(batch_size)):
            writer.write(batch)
            report.copied += len(batch)
            sampler.offer([r.id for r in batch])
            if on_progress is not None:
                on_progress(report.copied, report.total)
    except BaseException:
        writer.abort()
        raise
    writer.finish()
    report.seconds = time.perf_counter() - t0
    written = ParquetPoints(writer.path)
    try:
        report.destination_count = written.count()
        _verify_count(report, exact=True)
        report.vectors_checked = verify_sample(
            source.get_records(sampler.ids), written.get_records(sampler.ids), writer.url
        )
    finally:
        written.close()
    return report


def prefetched(batches: Iterable[list[PointRecord]], depth: int = 2) -> Iterator[list[PointRecord]]:
    """``batches``, read ahead on a thread while the caller writes (the engines release the GIL in
    their I/O), at most ``depth`` batches ahead so memory stays bounded. An error in the reader is
    raised here; closing this generator stops the reader."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        items.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            items.put(("error", exc))

    reader = threading.Thread(target=read, name="copy-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while reader.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                reader.join(timeout=0.1)


def _missing(dest: VectorStore, batch: list[Any], ids: list[str]) -> list[Any]:
    """The points of ``batch`` (records or engine points, with their ``ids``) the destination
    lacks or holds with another content hash."""
    held = {p.id: p.payload.get("content_hash") for p in dest.get(ids)}
    return [p for p, i in zip(batch, ids) if i not in held or held[i] != content_hash(p)]


def content_hash(point: Any) -> str | None:
    """The content hash a record or an engine point carries."""
    if isinstance(point, PointRecord):
        return point.chunk.content_hash
    return (point.payload or {}).get("content_hash")


def _verify_count(report: CopyReport, *, exact: bool) -> None:
    short = report.destination_count < report.total
    if short or (exact and report.destination_count != report.total):
        raise CopyVerificationError(
            f"{report.destination} holds {report.destination_count} points after copying {report.total} "
            f"from {report.source}"
        )


class Sampler:
    """Keeps the ids of about ``size`` points spread evenly over a stream of ``total`` (for
    verification: the source reads them back at the end)."""

    def __init__(self, total: int, size: int):
        self.every = max(1, total // max(size, 1)) if size > 0 else 0
        self.size = size
        self.seen = 0
        self.ids: list[str] = []

    def offer(self, ids: Sequence[str]) -> None:
        for point_id in ids:
            if self.every and self.seen % self.every == 0 and len(self.ids) < self.size:
                self.ids.append(point_id)
            self.seen += 1


def verify_sample(expected: Sequence[PointRecord], found: Sequence[PointRecord], where: str) -> int:
    """Check each expected record is in ``found`` with equal payload and vectors; returns how many."""
    by_id = {r.id: r for r in found}
    for want in expected:
        got = by_id.get(want.id)
        name = f"point {want.id} (document {want.chunk.doc_id!r} chunk {want.chunk.chunk})"
        if got is None:
            raise CopyVerificationError(f"{where}: {name} is missing after the copy")
        if got.payload() != want.payload():
            raise CopyVerificationError(f"{where}: {name} has a different payload after the copy")
        if not sparse_equal(want, got):
            raise CopyVerificationError(f"{where}: {name} has a different sparse vector after the copy")
        if not dense_equal(want.dense, got.dense):
            raise CopyVerificationError(f"{where}: {name} has a different dense vector after the copy")
    return len(expected)


def sparse_equal(a: PointRecord, b: PointRecord) -> bool:
    """Equal positive weights (impact-based engines keep only those), to float32 precision."""
    x = a.sparse.positive().as_dict() if a.sparse is not None else {}
    y = b.sparse.positive().as_dict() if b.sparse is not None else {}
    return x.keys() == y.keys() and all(math.isclose(x[k], y[k], rel_tol=VECTOR_RTOL) for k in x)


def dense_equal(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Equal directions (cosine engines may store the vector normalised), to float32 precision."""
    if a is None or b is None:
        return a is None and b is None
    if len(a) != len(b):
        return False
    na, nb = math.sqrt(sum(x * x for x in a)) or 1.0, math.sqrt(sum(x * x for x in b)) or 1.0
    return all(math.isclose(x / na, y / nb, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a, b))


def verify_rankings(source: VectorStore, dest: VectorStore, records: Sequence[PointRecord], limit: int = 10) -> int:
    """The same top-``limit`` in both stores for each record's own vectors and words; returns how many
    records were checked. Dense search is exact where the store offers it (HNSW graphs built
    in another order may differ slightly; the stored vectors may not)."""
    searches: list[tuple[str, Callable[[VectorStore, PointRecord], Any]]] = [
        ("sparse", lambda s, r: s.search_sparse(r.sparse, limit) if r.sparse is not None and len(r.sparse) else []),
        ("dense", lambda s, r: s.search_dense(r.dense, limit) if r.dense is not None else []),
    ]
    if source.schema is not None and source.schema.bm25 and BM25 in dest.capabilities:
        searches.append(("bm25", lambda s, r: s.search_bm25(" ".join(r.chunk.full_text.split()[:12]), limit)))
    exact = [(s, s.exact_dense) for s in (source, dest) if hasattr(s, "exact_dense")]
    for store, _ in exact:
        store.exact_dense = True
    try:
        for record in records:
            for name, search in searches:
                if not same_ranking(search(source, record), search(dest, record)):
                    raise CopyVerificationError(
                        f"{dest.url}: the {name} top-{limit} for document {record.chunk.doc_id!r} differs "
                        f"from {source.url}'s"
                    )
    finally:
        for store, before in exact:
            store.exact_dense = before
    return len(records)


def same_ranking(a: Sequence[Any], b: Sequence[Any], rel_tol: float = 1e-5) -> bool:
    """Whether two result lists rank the same points with the same scores (to float32 summation
    order). Points with tied scores may come in any order (the engine's storage order, which a
    copy need not keep), and among points tied with the last one, which of them made the cut."""
    if len(a) != len(b) or not all(math.isclose(x.score, y.score, rel_tol=rel_tol) for x, y in zip(a, b)):
        return False
    groups: list[list[int]] = []
    for i in range(len(a)):
        if groups and math.isclose(a[groups[-1][0]].score, a[i].score, rel_tol=rel_tol):
            groups[-1].append(i)
        else:
            groups.append([i])
    return all({a[i].id for i in g} == {b[i].id for i in g} for g in groups[:-1])
