"""Qdrant Edge: the Qdrant engine in-process, on local disk. The embedded default.

``qdrant-edge://PATH`` opens (or creates) a directory holding the shard and our schema file.
No server, no network; a write-ahead log makes acknowledged writes survive a crash. One process
at a time: our own lock file is taken *before* the engine loads anything, because the engine's
loader rewrites segment files before it reaches its WAL lock, and a second process merely trying
to open the store could throw away a writer's acknowledged points (issue 23).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..heap import build_step_turn, release_free_memory
from ..shared_lock import SharedExclusiveLock
from ..types import PointRecord, ScoredPoint, SparseVector
from .base import (
    BM25,
    DENSE,
    SPARSE,
    CollectionSchema,
    FusedQuery,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreQuery,
    VectorStore,
)
from .batch_plan import batched_or_empty, run_batch
from .file_copy import allocated_bytes, copy_tree, fsync_dir
from .filters import Condition
from .qdrant_common import (
    doc_id_filter,
    encoded_vectors,
    fusion_inputs,
    metadata_filter,
    point_vectors,
    qdrant_rrf_k,
    scored_point,
    stored_record,
)

#: The payload keys a search reads (None: all).
Fields = Sequence[str] | None

SCHEMA_FILE = "sparsehybrid.json"
#: Writes are refused below this much free disk (MiB; ``SPARSEHYBRID_MIN_FREE_MB``). The engine
#: writes through memory maps, and a write that finds the disk full kills the process with SIGBUS,
#: which no handler can turn into an error: refusing first keeps the store intact and explains why.
MIN_FREE_MB = int(os.environ.get("SPARSEHYBRID_MIN_FREE_MB", "64"))
SHARD_DIR = "shard"
#: Where a new shard is made before it is renamed to ``SHARD_DIR`` (see ``_create_engine_shard``).
CREATING_SHARD_DIR = ".shard-creating.partial"
#: The engine's record of a shard's settings, inside ``SHARD_DIR``.
EDGE_CONFIG_FILE = "edge_config.json"
#: ``?storage=`` of a new store: ``disk`` (the default) keeps dense vectors, the sparse and BM25
#: inverted indexes, the HNSW graph and payloads in memory-mapped files the kernel pages in and
#: out (``Memory.Cold``), and builds in bounded steps (below), so a process's memory stays flat
#: however large the collection grows; ``ram`` keeps the engine's indexes in heap (~10 KB a point
#: after optimizing, and an optimize over everything peaks at ~19 KB a point). Measured side by
#: side on the quiet machine they answer alike (30k points: hybrid p50 1.48 vs 1.44 ms, batched
#: 758 vs 813 q/s), so ``disk`` is the default. Fixed when the store is created.
STORAGE_MODES = ("ram", "disk")
DEFAULT_STORAGE = "disk"
#: ``disk`` stores build in bounded steps, so memory stays flat however large they grow. Written
#: points wait in an in-RAM appendable segment (~7 KB a point) until optimized, and one optimize
#: over everything merges it all into one segment (peak ~19 KB a point: 1.8 GB at 92k points,
#: and 217 s for 100k where 30k took 14-38 s). So: optimize every ``DISK_OPTIMIZE_EVERY``
#: written points into segments the merger keeps under ``disk_segment_kb`` of vectors, and
#: reload the shard after each optimize, which unmaps the pages the optimizer wrote (they stay in
#: the kernel's page cache, not in this process's RSS). The step's size trades an index job's
#: peak (the step adds ~10 KB a point to a process that also holds two encoders) against search
#: speed (one segment per step). Measured side by side at 100k points (``benchmarks/scale.py
#: --step``): batched 271 / 320 / 411 queries/s and build peak 550 / 648 / 883 MiB for 15k /
#: 20k / 30k steps; 20k keeps both ``sparsehybrid index`` under 1.5 GB and 300 queries/s at 100k.
#: A million points want ``?step=100000`` (see README, "Scale").
DISK_OPTIMIZE_EVERY = int(os.environ.get("SPARSEHYBRID_DISK_OPTIMIZE_EVERY", "20000"))
#: Segment size per point of a step (KB): 33 MB for a 20k-point step, just over one step's
#: 384-d float vectors, so each step makes a segment of its own and steps never merge (a merge
#: peaks like a step of the merged size). ``?step=N`` sets both for a new store.
DISK_SEGMENT_KB_PER_POINT = 50_000 / 30_000


def disk_segment_kb(step: int) -> int:
    """The ``max_segment_size`` (KB) of a new ``disk`` store that optimizes every ``step`` points."""
    return math.ceil(step * DISK_SEGMENT_KB_PER_POINT)


LOCK_FILE = ".sparsehybrid.lock"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def persisted_storage(shard_dir: Path) -> str | None:
    """The ``?storage=`` a shard was created with, from the engine's own config file (a store
    opened later without the option keeps its mode), or None when it cannot be read."""
    try:
        config = json.loads((shard_dir / EDGE_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # Only a ``disk`` shard sets the id tracker's placement; payloads are no sign: the engine's
    # load writes its defaults into the file, and its default payload placement is "cold".
    return "disk" if isinstance(config, dict) and config.get("id_tracker_memory") == "cold" else "ram"


def _edge():
    import qdrant_edge

    return qdrant_edge


def _edge_value(value: Any) -> Any:
    """qdrant-edge-py 0.9 turns a Python bool into the int 1/0 (so bool payloads never match);
    numpy's bool is extracted as a real bool."""
    if isinstance(value, bool):
        import numpy as np

        return np.bool_(value)
    return value


def edge_filter(conditions: list[Condition]) -> Any:
    """Translate parsed conditions to a Qdrant Edge Filter over the ``metadata`` payload."""
    q = _edge()
    return metadata_filter(q, conditions, q.RangeFloat, _edge_value)


def bm25_term_frequencies(text: str, language: str = "english") -> dict[int, int]:
    """Term frequencies of ``text`` exactly as Qdrant's BM25 analyzer sees them (token id -> tf).

    The embedder only returns saturated weights; with b=0 a weight is tf·(k+1)/(tf+k), which
    inverts to tf = w·k/(k+1-w). Used to measure real document lengths for BM25's avg_len.
    """
    k = 1.2
    vec = _tf_embedder(language, k).embed_document(text)
    return {int(i): max(1, round(w * k / (k + 1 - w))) for i, w in zip(vec.indices, vec.values)}


_TF_EMBEDDERS: dict[tuple[str, float], Any] = {}


def _tf_embedder(language: str, k: float):
    key = (language, k)
    if key not in _TF_EMBEDDERS:
        q = _edge()
        _TF_EMBEDDERS[key] = q.Bm25(q.Bm25Config(language=language, k=k, b=0.0))
    return _TF_EMBEDDERS[key]


#: Points whose payloads are read back when a store opens (a cheap check, not a scan).
SAMPLE_POINTS = 32
RECOVERY = (
    "restore it from a backup, or rebuild it: `sparsehybrid copy` what can still be read into a new "
    "store, or index the source again into a new directory"
)


def one_line(exc: BaseException) -> str:
    """An engine error's first line, without the binding's "Service runtime error:" prefix."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.removeprefix("Service runtime error: ").strip()


def damaged_part(exc: BaseException) -> str:
    """Which part of the shard an engine error points at (the engine says it in words only)."""
    text = str(exc).lower()
    for words, part in (
        (("lz4", "decompress", "decode value", "payload"), "payload storage"),
        (("id tracker", "id_tracker", "mapping", "version"), "id tracker"),
        (("wal",), "write-ahead log"),
        (("vector",), "vector storage"),
        (("segment",), "segment files"),
    ):
        if any(w in text for w in words):
            return part
    return "shard files"


def checked_point(p: Any, score: float, url: str) -> ScoredPoint:
    """A point read from the engine, refused when it lacks what every point we write carries."""
    point = scored_point(p, score)
    if "doc_id" not in point.payload:
        raise StoreCorruptError(
            f"{url} is damaged: point {point.id} has no doc_id in its payload (id tracker or payload "
            f"storage); {RECOVERY}"
        )
    return point


class GuardedShard:
    """The engine's shard, its errors turned into one-line :class:`StoreCorruptError` s naming the
    store and the damaged part (the binding raises bare ``Exception`` with Rust's message). Each
    engine call shares :attr:`gate`; a ``disk`` store's reload, ``close()`` and a copy of the
    shard's files take it alone, and calls from other threads wait for them instead of failing."""

    def __init__(self, shard: Any, url: str):
        self.inner, self._url = shard, url
        self.gate = SharedExclusiveLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._open_inner(), name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.gate.shared():
                method = getattr(self._open_inner(), name)  # the shard of now: a reload may have swapped it
                try:
                    return method(*args, **kwargs)
                except StoreError:
                    raise
                except Exception as exc:
                    if type(exc) is not Exception:  # a TypeError/ValueError of ours, not the engine's
                        raise
                    raise StoreCorruptError(
                        f"{self._url} is damaged: the engine failed reading its {damaged_part(exc)} "
                        f"({one_line(exc)}); {RECOVERY}"
                    ) from None

        return call

    def _open_inner(self) -> Any:
        if self.inner is None:
            raise StoreError(f"{self._url} was closed")
        return self.inner


#: This process's store locks, by the lock file's (device, inode): the engine lets one process
#: open a store more than once, and flock would refuse a second descriptor of the same process.
_HELD: dict[tuple[int, int], list[int]] = {}  # -> [fd, holders]
_HELD_GUARD = threading.Lock()


def _process_lock(lock_file: Path, url: str) -> tuple[int, int]:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _HELD_GUARD:
        if key in _HELD:
            os.close(fd)
            _HELD[key][1] += 1
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{url} is open for writing in another process; Qdrant Edge allows one process "
                "per index. Stop that process (or wait for it to finish) and try again."
            ) from None
        _HELD[key] = [fd, 1]
        return key


def _process_unlock(key: tuple[int, int]) -> None:
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            os.close(held[0])  # closing the descriptor releases the flock


class QdrantEdgeStore(VectorStore):
    """A collection stored by Qdrant Edge in ``path``.

    Vectors: ``sparse`` (learned sparse, plain dot product), ``dense`` (cosine) and ``bm25``
    (Qdrant's own BM25 embedder, with the IDF modifier so IDF stays current as documents change).
    """

    capabilities = frozenset({SPARSE, DENSE, BM25})
    native_fusion = True
    partial_payloads = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        exact_dense: bool = False,
        storage: str | None = None,
        step: int | None = None,
    ):
        if storage is not None and storage not in STORAGE_MODES:
            raise ValueError(f"storage must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise ValueError(f"step must be a whole number of points >= 1, got {step!r}")
        #: A ``disk`` store's bounded step: optimize every ``step`` written points (``?step=``).
        self.step = step or DISK_OPTIMIZE_EVERY
        #: The ``?storage=`` the URL asked for (None: not stated; a new store is then ``DEFAULT_STORAGE``).
        self.requested_storage = storage
        self.storage = storage or DEFAULT_STORAGE
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is a file, not a store directory; give a directory path")
        self.exact_dense = exact_dense
        self._shard: Any = None
        self._schema: CollectionSchema | None = None
        self._bm25: Any = None
        self._lock = threading.RLock()
        self._lock_fd: tuple[int, int] | None = None
        #: Points written since the last optimize (``disk`` stores optimize in bounded steps).
        self._unoptimized = 0
        schema_file = self.path / SCHEMA_FILE
        if schema_file.exists():
            self._schema = self._read_schema(schema_file)
            self._open_shard(create=False)

    def _read_schema(self, schema_file: Path) -> CollectionSchema:
        try:
            return CollectionSchema.from_dict(json.loads(schema_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreCorruptError(
                f"{self.url} is damaged: its schema file {schema_file} cannot be read "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {RECOVERY}"
            ) from None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"qdrant-edge://{self.path}"

    @property
    def schema(self) -> CollectionSchema | None:
        return self._schema

    def _check_free_space(self) -> None:
        free = free_bytes(self.path)
        if free < MIN_FREE_MB * 2**20:
            raise StoreError(
                f"{self.url}: only {free / 2**20:.1f} MiB free on its disk (writes need {MIN_FREE_MB} MiB); "
                "free some space and run again: the store is intact and the run resumes"
            )

    def _create_collection(self, schema: CollectionSchema) -> CollectionSchema:
        self._check_free_space()
        self._make_directory()
        self._schema = schema
        self._open_shard(create=True)
        self._write_schema()
        return schema

    def _make_directory(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.path}: {exc.strerror or exc}") from None

    def _write_schema(self) -> None:
        tmp = self.path / (SCHEMA_FILE + ".tmp")
        tmp.write_text(json.dumps(self._require_schema().to_dict(), indent=2, sort_keys=True))
        os.replace(tmp, self.path / SCHEMA_FILE)

    def _save_schema(self, schema: CollectionSchema) -> None:
        with self._lock:
            self._schema = schema
            self._write_schema()

    def _take_process_lock(self) -> None:
        """Hold ``LOCK_FILE`` for as long as the shard is open; refuse if another process holds it.
        Taken before the engine loads a byte: its loader writes."""
        if self._lock_fd is None:
            self._lock_fd = _process_lock(self.path / LOCK_FILE, self.url)

    def _release_process_lock(self) -> None:
        if self._lock_fd is not None:
            _process_unlock(self._lock_fd)
            self._lock_fd = None

    def _open_shard(self, create: bool) -> None:
        self._take_process_lock()
        try:
            self._load_shard(create)
        except BaseException:
            if self._shard is not None:
                with contextlib.suppress(Exception):  # a damaged shard may fail to close too
                    self._shard.close()
                self._shard = None
            self._release_process_lock()
            raise

    def _load_shard(self, create: bool) -> None:
        schema = self._require_schema()
        self._shard = GuardedShard(self._engine_shard(create), self.url)
        self._check_sample()
        if schema.bm25:
            q = _edge()
            self._bm25 = q.Bm25(q.Bm25Config(language=schema.bm25_language, avg_len=float(schema.bm25_avg_len)))

    def _engine_shard(self, create: bool) -> Any:
        """The engine's shard of this store, created (``create``, when there is none) or loaded."""
        q = _edge()
        schema = self._require_schema()
        self._check_free_space()  # even loading may write (the WAL), and a full disk means SIGBUS
        cold = {"memory": q.Memory.Cold} if self.storage == "disk" else {}
        vectors = {}
        if schema.dense_dim:
            hnsw = {"hnsw_config": q.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10000, **cold)}
            vectors[DENSE] = q.EdgeVectorParams(
                size=int(schema.dense_dim), distance=q.Distance.Cosine, **cold, **(hnsw if cold else {})
            )
        sparse_vectors = {}
        if schema.sparse_model:
            sparse_vectors[SPARSE] = q.EdgeSparseVectorParams(**cold)
        if schema.bm25:
            sparse_vectors[BM25] = q.EdgeSparseVectorParams(modifier=q.Modifier.Idf, **cold)
        storage = {"payload_memory": q.Memory.Cold, "id_tracker_memory": q.Memory.Cold} if cold else {}
        if cold:
            storage["optimizers"] = q.EdgeOptimizersConfig(max_segment_size=disk_segment_kb(self.step))
        config = q.EdgeConfig(vectors=vectors or None, sparse_vectors=sparse_vectors or None, **storage)
        shard_path = str(self.path / SHARD_DIR)
        shard = None
        try:
            if create and not (self.path / SHARD_DIR / "segments").exists():
                self._create_engine_shard(config)
            self.storage = persisted_storage(self.path / SHARD_DIR) or self.storage
            shard = q.EdgeShard.load(shard_path)
            return shard
        except Exception as exc:  # the binding raises a bare Exception
            if shard is not None:
                with contextlib.suppress(Exception):
                    shard.close()
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise StoreLockedError(
                    f"{self.url} is open for writing in another process; Qdrant Edge allows one process "
                    "per index. Stop that process (or wait for it to finish) and try again."
                ) from None
            raise StoreCorruptError(
                f"{self.url} is damaged: the engine cannot load its shard ({damaged_part(exc)}: "
                f"{one_line(exc)}); {RECOVERY}"
            ) from None

    def _create_engine_shard(self, config: Any) -> None:
        """Make a new shard in a hidden folder and rename it into place once whole. A process
        killed while the engine was creating one left a ``shard`` folder that no later run could
        load ("edge config is not provided"), so the store refused every run after it; now the
        next creation clears what a killed one left (under the process lock)."""
        q = _edge()
        partial, final = self.path / CREATING_SHARD_DIR, self.path / SHARD_DIR
        shutil.rmtree(partial, ignore_errors=True)
        shard = q.EdgeShard.create(str(partial), config)
        try:
            shard.update(q.UpdateOperation.create_field_index("doc_id", q.PayloadSchemaType.Keyword))
            shard.flush()
        finally:
            shard.close()
        shutil.rmtree(final, ignore_errors=True)  # a shard folder without segments never held a point
        os.replace(partial, final)
        fsync_dir(self.path)

    def _check_sample(self) -> None:
        """The cheap part of a consistency check on open: the first points' payloads decode and
        each names its document (a full scan is ``sparsehybrid info``'s job)."""
        records, _ = self._shard.scroll(
            _edge().ScrollRequest(limit=SAMPLE_POINTS, with_payload=["doc_id", "chunk"], with_vector=False)
        )
        for r in records:
            checked_point(r, 0.0, self.url)

    @property
    def shard(self):
        if self._shard is None:
            raise StoreError(f"{self.url} holds no collection yet: index something first")
        return self._shard

    def flush(self) -> None:
        if self._shard is not None:
            self._shard.flush()

    def optimize(self) -> None:
        """Merge segments and build indexes after bulk writes (faster searches). A ``disk`` store
        reloads its shard around it: before, because the engine maps the appendable segment's
        files twice (to read and to write) and the optimizer reading them through both counted
        every page twice (a 30k-point step peaked at 818 MiB, 693 after a reload; 20k: 574 vs
        509); after, so the optimizer's pages are unmapped and RSS stays flat. Batches being
        encoded in this process wait for it (:func:`~sparsehybrid.heap.build_step_turn`)."""
        with build_step_turn(), self._lock:
            if self._shard is None:
                return
            if self.storage == "disk" and self._unoptimized:
                self._reload_shard()
            self._shard.optimize()
            self._unoptimized = 0
            if self.storage == "disk":
                self._reload_shard()

    def _reload_shard(self) -> None:
        """Close and load the engine's shard again, keeping the process lock (no other process
        can slip in); engine calls from other threads wait for it (see :class:`GuardedShard`)."""
        guarded = self._shard
        with guarded.gate.exclusive():
            guarded.inner.flush()
            guarded.inner.close()
            release_free_memory()
            try:
                guarded.inner = self._engine_shard(create=False)
            except BaseException:
                self._shard = None
                self._release_process_lock()
                raise

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                try:
                    with self._shard.gate.exclusive():  # engine calls under way finish first
                        self._shard.inner.flush()
                        self._shard.inner.close()
                        self._shard.inner = None
                finally:
                    self._shard = None
                    self._release_process_lock()

    def bm25_doc_length(self, text: str) -> int:
        """Length of ``text`` in BM25 tokens (after stopwords), as Qdrant counts it."""
        language = self._schema.bm25_language if self._schema else "english"
        return sum(bm25_term_frequencies(text, language).values())

    def disk_size(self) -> int:
        """Bytes actually allocated on disk (the WAL and mmap files are sparse, so sizes overstate)."""
        return allocated_bytes(self.path)

    # -- writes ------------------------------------------------------------------------------
    def _upsert(self, records: Sequence[PointRecord]) -> int:
        q = _edge()
        schema = self._require_schema()
        self._check_free_space()
        # Every vector is checked before anything is written.
        points = [q.Point(r.id, point_vectors(r, schema, q, self._bm25), r.payload()) for r in records]
        self.shard.update(q.UpdateOperation.upsert_points(points))
        self._after_write(len(points))
        return len(points)

    def engine_points_to(self, dest: Any) -> EdgeEnginePoints | None:
        """Copying into another embedded store: points move in the engine's own form (see
        :class:`EdgeEnginePoints`); None for any other destination."""
        if not isinstance(dest, QdrantEdgeStore) or self._schema is None or dest.schema is None:
            return None
        bm25 = ("bm25", "bm25_language", "bm25_avg_len")  # the stored BM25 vectors depend on them
        same = all(getattr(self._schema, f) == getattr(dest.schema, f) for f in bm25)
        return EdgeEnginePoints(self, dest) if same else None

    def shard_copy_to(self, dest: Any) -> EdgeShardCopy | None:
        """Copying into a new embedded store (no collection, no shard yet) whose URL asks for this
        store's storage mode or none: the engine's files are copied as they are (see
        :class:`EdgeShardCopy`); None otherwise."""
        if (
            not isinstance(dest, QdrantEdgeStore)
            or self._shard is None
            or dest.schema is not None
            or dest.requested_storage not in (None, self.storage)
            or (dest.path / SHARD_DIR).exists()
        ):
            return None
        return EdgeShardCopy(self, dest)

    def _write_engine_points(self, points: list[Any]) -> None:
        self._check_free_space()
        self.shard.update(_edge().UpdateOperation.upsert_points(points))
        self._after_write(len(points))

    def _after_write(self, n: int) -> None:
        self._unoptimized += n
        if self.storage == "disk" and self._unoptimized >= self.step:
            self.optimize()  # bounded steps: see DISK_OPTIMIZE_EVERY

    def _require_schema(self) -> CollectionSchema:
        if self._schema is None:
            raise StoreError(f"{self.url} holds no collection yet: call ensure_schema() first")
        return self._schema

    def delete_points(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self.shard.update(_edge().UpdateOperation.delete_points(list(point_ids)))

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        q = _edge()
        self.shard.update(q.UpdateOperation.delete_points_by_filter(doc_id_filter(q, doc_ids)))

    # -- reads -------------------------------------------------------------------------------
    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        if self._shard is None:
            return 0
        return int(self.shard.count(_edge().CountRequest(exact=True, filter=edge_filter(self._conditions(filter)))))

    def get(self, point_ids: Sequence[str], with_sparse: bool = False) -> list[ScoredPoint]:
        if not point_ids or self._shard is None:
            return []
        records = self.shard.retrieve(
            point_ids=list(point_ids), with_payload=True, with_vector=[SPARSE] if with_sparse else False
        )
        return [checked_point(r, 0.0, self.url) for r in records]

    def iter_points(self, batch_size: int = 1000, fields: Sequence[str] | None = None) -> Iterator[ScoredPoint]:
        """Every point's payload; ``fields`` limits which payload keys are read."""
        for records in self._scroll(batch_size, list(fields) if fields else True, False):
            yield from (checked_point(r, 0.0, self.url) for r in records)

    def iter_records(self, batch_size: int = 1000) -> Iterator[list[PointRecord]]:
        if self._shard is None:
            return
        schema = self._require_schema()
        for records in self._scroll(batch_size, True, encoded_vectors(schema)):
            yield [stored_record(r, schema) for r in records]

    def _scroll(self, batch_size: int, with_payload: Any, with_vector: Any) -> Iterator[list[Any]]:
        """Every point, a page at a time (the engine's scroll)."""
        if self._shard is None:
            return
        q = _edge()
        offset = None
        while True:
            records, offset = self.shard.scroll(
                q.ScrollRequest(offset=offset, limit=batch_size, with_payload=with_payload, with_vector=with_vector)
            )
            if records:
                yield records
            if offset is None:
                break

    def get_records(self, point_ids: Sequence[str]) -> list[PointRecord]:
        if not point_ids or self._shard is None:
            return []
        schema = self._require_schema()
        found = self.shard.retrieve(point_ids=list(point_ids), with_payload=True, with_vector=encoded_vectors(schema))
        return [stored_record(r, schema) for r in found]

    def document_states(self) -> dict[str, tuple[str, int]]:
        # Same as the base, reading only the four small payload keys instead of whole texts.
        return {
            p.payload["doc_id"]: (p.payload.get("content_hash", ""), int(p.payload.get("n_chunks", 1)))
            for p in self.iter_points(fields=("doc_id", "chunk", "n_chunks", "content_hash"))
            if p.payload.get("chunk", 0) == 0
        }

    def _request(
        self,
        query,
        using: str,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool = False,
        params=None,
        fields: Sequence[str] | None = None,
    ):
        q = _edge()
        return q.QueryRequest(
            query=q.Query.Nearest(query, using=using),
            limit=int(limit),
            filter=edge_filter(conditions),
            with_payload=list(fields) if fields is not None else True,
            with_vector=[SPARSE] if with_sparse else False,
            params=params,
        )

    def _run(self, request) -> list[ScoredPoint]:
        """One request's results; None (a query that finds nothing) sends nothing."""
        if request is None:
            return []
        return [checked_point(p, p.score, self.url) for p in self.shard.query(request)]

    def _sparse_request(
        self,
        vector: SparseVector,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool,
        fields: Sequence[str] | None = None,
    ):
        if not len(vector) or self._shard is None:
            return None
        qv = _edge().SparseVector(indices=list(vector.indices), values=list(vector.values))
        return self._request(qv, SPARSE, limit, conditions, with_sparse, fields=fields)

    def _search_sparse(
        self,
        vector: SparseVector,
        limit: int,
        conditions: list[Condition],
        with_sparse: bool,
        fields: Sequence[str] | None = None,
    ) -> list[ScoredPoint]:
        return self._run(self._sparse_request(vector, limit, conditions, with_sparse, fields))

    def _dense_request(
        self, vector: list[float], limit: int, conditions: list[Condition], fields: Sequence[str] | None = None
    ):
        if self._shard is None:
            return None
        params = _edge().SearchParams(exact=True) if self.exact_dense else None
        return self._request(vector, DENSE, limit, conditions, params=params, fields=fields)

    def _search_dense(
        self, vector: list[float], limit: int, conditions: list[Condition], fields: Sequence[str] | None = None
    ) -> list[ScoredPoint]:
        return self._run(self._dense_request(vector, limit, conditions, fields))

    def _bm25_request(self, text: str, limit: int, conditions: list[Condition], fields: Sequence[str] | None = None):
        if self._shard is None or self._bm25 is None:  # a collection built without BM25 finds nothing
            return None
        qv = self._bm25.embed_query(text)
        if not len(qv.indices):
            return None
        return self._request(qv, BM25, limit, conditions, fields=fields)

    def _search_bm25(
        self, text: str, limit: int, conditions: list[Condition], fields: Sequence[str] | None = None
    ) -> list[ScoredPoint]:
        return self._run(self._bm25_request(text, limit, conditions, fields))

    def _fused_request(self, query: FusedQuery):
        """RRF inside the engine: one prefetch per retriever, fused by ``Fusion.Rrf``."""
        q = _edge()
        flt = edge_filter(query.conditions)
        inputs = fusion_inputs(query, q, self._bm25)
        if not inputs or self._shard is None:
            return None
        prefetches = [
            q.Prefetch(limit=query.candidates, query=q.Query.Nearest(vec, using=name), filter=flt)
            for name, vec in inputs
        ]
        return q.QueryRequest(
            prefetches=prefetches,
            query=q.Fusion.Rrf(k=qdrant_rrf_k(query.k), weights=query.weight_list([n for n, _ in inputs])),
            limit=query.limit,
            filter=flt,
            with_payload=True,
        )

    def _search_fused(self, query: FusedQuery) -> list[ScoredPoint]:
        return self._run(self._fused_request(query))

    # -- batches -----------------------------------------------------------------------------
    def search_batch(self, queries: Sequence[StoreQuery]) -> list[list[ScoredPoint]]:
        """Every query in one ``EdgeShard.query_batch`` call (the requests ``search_*`` would send)."""
        builder = _EdgeRequests(self)
        plan = [batched_or_empty(self._build_request(query, builder)) for query in queries]
        return run_batch(
            queries,
            plan,
            send=lambda requests: self.shard.query_batch(_edge().QueryBatchRequest(queries=requests)),
            read=lambda _request, answer: [checked_point(p, p.score, self.url) for p in answer],
            on_its_own=self.search_one,
        )


@dataclass(frozen=True)
class _EdgeRequests:
    """The ``QueryRequest`` each ``search_*`` call of ``store`` sends (:class:`RequestBuilder`)."""

    store: QdrantEdgeStore

    def sparse(
        self, vector: SparseVector, limit: int, conditions: list[Condition], with_sparse: bool, fields: Fields
    ) -> Any:
        return self.store._sparse_request(vector, limit, conditions, with_sparse, fields)

    def dense(self, vector: list[float], limit: int, conditions: list[Condition], fields: Fields) -> Any:
        return self.store._dense_request(vector, limit, conditions, fields)

    def bm25(self, text: str, limit: int, conditions: list[Condition], fields: Fields) -> Any:
        return self.store._bm25_request(text, limit, conditions, fields)

    def fused(self, query: FusedQuery) -> Any:
        return self.store._fused_request(query)


class EdgeEnginePoints:
    """One embedded store's points copied into another as the engine's own points: every vector
    (BM25 included: both collections share its settings, which ``copy`` checks) and the payload
    go across as read, with no conversion to records and back and no BM25 derived again from the
    text (most of a copy's time when it was)."""

    def __init__(self, source: QdrantEdgeStore, dest: QdrantEdgeStore):
        self.source, self.dest = source, dest

    def read(self, batch_size: int) -> Iterator[list[Any]]:
        q = _edge()
        for records in self.source._scroll(batch_size, True, True):
            yield [q.Point(r.id, r.vector, r.payload) for r in records]

    def write(self, points: list[Any]) -> None:
        if points:
            self.dest._write_engine_points(points)


class EdgeShardCopy:
    """A whole collection copied into a new embedded store as the engine's files: segments with
    their built indexes, write-ahead log and settings, so the copy runs at the disk's speed,
    builds nothing again and searches exactly as the source (how Qdrant itself moves a shard
    between nodes, as a snapshot). The source is flushed and held (its locks) while its files
    are read; they land in a hidden folder that is renamed into place when complete, and the
    schema file, written last, marks the copy done: a copy killed midway leaves no collection,
    and running it again starts over."""

    PARTIAL = ".shard-copy.partial"

    def __init__(self, source: QdrantEdgeStore, dest: QdrantEdgeStore):
        self.source, self.dest = source, dest

    def point_ids(self, batch_size: int = 10_000) -> Iterator[list[str]]:
        """The source's point ids, a page at a time (for the sample a copy verifies)."""
        for records in self.source._scroll(batch_size, False, False):
            yield [str(r.id) for r in records]

    def run(self, on_bytes: Callable[[int, int], None] | None = None) -> int:
        """Copy, then open the destination on the copied shard; ``on_bytes(done, total)`` as the
        files are copied. Returns the bytes copied."""
        source, dest = self.source, self.dest
        engine = source.shard
        # Alone on the source's shard: no thread of this process reads or writes it meanwhile
        # (other processes are kept out by its lock), so the files copied are one state.
        with source._lock, dest._lock, engine.gate.exclusive():
            engine.inner.flush()
            shard = source.path / SHARD_DIR
            total = allocated_bytes(shard)
            dest._make_directory()
            dest._take_process_lock()  # no other process writes here while the files land
            partial = dest.path / self.PARTIAL
            done = 0

            def moved(n: int) -> None:
                nonlocal done
                done += n
                if on_bytes is not None:
                    on_bytes(min(done, total), total)

            try:
                free = free_bytes(dest.path)
                if free < total + MIN_FREE_MB * 2**20:
                    raise StoreError(
                        f"{dest.url}: the copy needs {total / 2**20:.0f} MiB and {MIN_FREE_MB} MiB to spare, "
                        f"but its disk has {free / 2**20:.0f} MiB free; free some space and run again"
                    )
                shutil.rmtree(partial, ignore_errors=True)  # what a killed copy left
                copy_tree(shard, partial, moved)
                os.replace(partial, dest.path / SHARD_DIR)
            except BaseException as exc:
                shutil.rmtree(partial, ignore_errors=True)
                dest._release_process_lock()
                if isinstance(exc, OSError):
                    raise StoreError(
                        f"{dest.url}: copying the files of {source.url} failed ({exc.strerror or exc}); "
                        "nothing was kept: run the copy again"
                    ) from None
                raise
            dest._schema = source.schema
            dest._open_shard(create=False)
            dest._write_schema()
            return done
