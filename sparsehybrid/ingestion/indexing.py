"""The indexing engine: plan → encode (in flight) → write → sync → flush, one loop for every driver.

:func:`run_index` is the only indexing loop. The in-process :class:`Indexer` drives it with a
thread that encodes the next batch while this one is written; the Prefect flow drives it with
``encode-batch`` tasks (threads or Dask workers) and retried ``write-batch`` tasks. Only *how* a
batch is encoded and written is plugged in; selection by content hash, stale-chunk deletion, the
sync pass and the run's numbers are decided here, once.

Incremental by construction: point ids are deterministic and every chunk carries its document's
content hash, so re-running over the same corpus skips what is already stored, and a run that
died mid-way resumes by simply running again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

from ..connectors.base import CollectionSchema
from ..connectors.sink import IndexSink
from ..heap import bound_malloc_arenas, release_free_memory
from ..types import Chunk, Document, InvalidRecordError, PointRecord
from .dead_letter import run_timestamp, write_dead_letter
from .encoding import BatchEncoder, EncodedBatch
from .sources import Rejected, SourceItem
from .spool import DocumentSpool

logger = logging.getLogger(__name__)

#: How many leading documents measure BM25's average document length for a new collection.
AVG_LEN_SAMPLE = 2000

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
#: A stored document's state: (content hash, number of chunks).
StoredState = tuple[str, int]
#: A document selected for encoding, with its stored state (None: new).
Planned = tuple[Document, StoredState | None]


class MassDeleteError(ValueError):
    """A sync would delete more of the collection than allowed: refused before anything is written."""


class IndexInterrupted(RuntimeError):
    """The run was asked to stop; every batch it wrote is whole, so running it again resumes."""


class Pending(Protocol[T_co]):
    """What an encode submission returns: a concurrent.futures.Future or a PrefectFuture."""

    def result(self) -> T_co: ...


#: How often a wait for a pending result looks at the stop request (seconds).
STOP_POLL_S = 0.05


def result_unless_stopped(
    pending: Pending[T], should_stop: Callable[[], bool] | None, interrupted: Callable[[], NoReturn]
) -> T:
    """``pending``'s result, or ``interrupted()`` (which raises) as soon as ``should_stop()`` while
    it is not ready: a model loading or a batch encoding cannot be interrupted mid-call, but the
    run need not wait for it (issue 23). Futures are polled through their ``done()`` (a Prefect
    future's through its wrapped future); anything else is simply waited for."""
    inner = getattr(pending, "wrapped_future", pending)
    done = getattr(inner, "done", None)
    if should_stop is not None and callable(done):
        while not done():
            if should_stop():
                interrupted()
            time.sleep(STOP_POLL_S)
    return pending.result()


@dataclass
class IndexStats:
    """What one indexing run did; the numbers a run summary (CLI table, Prefect artifact) shows."""

    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    duplicates: int = 0
    #: Ids given more than once with different contents (the last copy wins): named, not just counted.
    conflicting_ids: list[str] = field(default_factory=list)
    chunks: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: Chunks stored with an empty sparse vector (e.g. punctuation only): only dense/BM25 can find them.
    empty_sparse: int = 0
    #: Documents selected for encoding, the batches they make, and how many are written so far.
    to_encode: int = 0
    batches: int = 0
    batches_done: int = 0
    workers: set[str] = field(default_factory=set)
    #: Wall seconds per stage, in the order the stages ran.
    stages: dict[str, float] = field(default_factory=dict)
    #: Seconds of work per step summed over batches ("chunk", "sparse", "dense" on the encoders,
    #: "write"): encoding overlaps writing, so these, not the wall stages, give docs/s per step.
    work: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    encode_seconds: float = 0.0
    upsert_seconds: float = 0.0

    @property
    def encoded(self) -> int:
        return self.added + self.updated

    @property
    def docs_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "duplicates": self.duplicates,
            "conflicting_ids": self.conflicting_ids[:20],
            "rejected": len(self.rejected),
            "empty_sparse": self.empty_sparse,
            "chunks": self.chunks,
            "batches": self.batches,
            "encode_workers": len(self.workers),
            "seconds": round(self.seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "upsert_seconds": round(self.upsert_seconds, 3),
            "docs_per_second": round(self.docs_per_second, 2),
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "work": {k: round(v, 3) for k, v in self.work.items()},
            "docs_per_second_by_step": {k: round(self.encoded / v, 1) for k, v in self.work.items() if v > 0},
        }

    def summary(self, store_url: str) -> dict[str, Any]:
        """The run summary every driver reports: the numbers, the store and the first rejections."""
        return self.as_dict() | {"store": store_url, "rejected_records": [str(r) for r in self.rejected[:100]]}


def rejection_failure(stats: IndexStats, max_fraction: float) -> str | None:
    """Why a run with these rejections failed, or None: every record, or more than the allowed share."""
    rejected = len(stats.rejected)
    total = rejected + stats.seen
    if not rejected:
        return None
    if stats.seen == 0:
        return f"every record was rejected ({rejected}); nothing was indexed"
    if rejected > max_fraction * total:
        return f"{rejected} of {total} records were rejected ({rejected / total:.0%}, more than the {max_fraction:.0%} allowed)"
    return None


def estimate_avg_len(store: IndexSink, docs: Sequence[Document]) -> float:
    """Average BM25 document length over a sample: length normalisation needs the corpus average."""
    if not docs:
        return 256.0
    return max(1.0, sum(store.bm25_doc_length(d.full_text) for d in docs) / len(docs))


# -- planning -------------------------------------------------------------------------------------


def name_positions(items: Iterable[SourceItem | Document]) -> Iterator[SourceItem | Document]:
    """Documents without a usable id become Rejected named by their position in the stream."""
    for pos, item in enumerate(items, start=1):
        if isinstance(item, Document) and (not isinstance(item.id, str) or not item.id.strip()):
            try:
                item.validate()
            except InvalidRecordError as err:
                item = Rejected(f"document #{pos}", err.field_name, err.reason)
        yield item


@dataclass
class _LastCopy:
    """What the plan keeps of an id's latest copy: where it is spooled, its content hash (None:
    invalid, with the reason) and whether an earlier copy had other contents."""

    position: int
    content_hash: str | None
    error: InvalidRecordError | None = None
    conflicting: bool = False


@dataclass
class Plan:
    """What a run will do: documents to encode (spool positions with their stored state), the
    stored states, and the ids a sync deletes. The texts stay in the spool until their batch."""

    spool: DocumentSpool
    todo: list[tuple[int, StoredState | None]]
    stored: dict[str, StoredState]
    vanished: list[str]

    def batches(self, size: int) -> list[list[tuple[int, StoredState | None]]]:
        return [self.todo[i : i + size] for i in range(0, len(self.todo), size)]

    def load(self, refs: Sequence[tuple[int, StoredState | None]]) -> list[Planned]:
        """One batch's documents, read back from the spool."""
        return list(zip(self.spool.load([position for position, _ in refs]), (old for _, old in refs)))

    def close(self) -> None:
        self.spool.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Records read between two looks at a stop request while planning.
STOP_CHECK_EVERY = 1000


def _spool_stream(
    items: Iterable[SourceItem | Document],
    spool: DocumentSpool,
    stats: IndexStats,
    seen_ids: set[str],
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, _LastCopy]:
    """Read the stream once: documents go to the spool, and each id's latest copy is noted
    (last wins); records rejected by the source are counted here. A stop request ends the read
    (nothing is written yet)."""
    last: dict[str, _LastCopy] = {}
    for position, item in enumerate(name_positions(items)):
        if should_stop is not None and position % STOP_CHECK_EVERY == 0 and should_stop():
            raise IndexInterrupted(
                "stopped while reading the source, nothing written: run the same command again to resume"
            )
        if isinstance(item, Rejected):
            stats.rejected.append(item)
            if item.doc_id:
                seen_ids.add(item.doc_id)  # present in the source, only unreadable: never synced away
            continue
        try:  # name_positions has made every document without a usable id a Rejected
            item.validate()
            copy = _LastCopy(spool.add(item), item.content_hash())
        except InvalidRecordError as err:
            copy = _LastCopy(-1, None, err)
        previous = last.get(item.id)
        if previous is not None:
            stats.duplicates += 1
            copy.conflicting = previous.conflicting or previous.content_hash != copy.content_hash
            if copy.conflicting and item.id not in stats.conflicting_ids:
                stats.conflicting_ids.append(item.id)
        last[item.id] = copy
    return last


def plan_index(
    store: IndexSink,
    items: Iterable[SourceItem | Document],
    stats: IndexStats,
    *,
    skip_unchanged: bool = True,
    sync: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Plan:
    """What a run would do, without encoders (see :class:`Plan`; close it when done). Counts
    seen, unchanged, rejected and duplicates into ``stats``. Memory: ids and hashes, not texts."""
    spool = DocumentSpool()
    try:
        seen_ids: set[str] = set()
        last = _spool_stream(items, spool, stats, seen_ids, should_stop)
        # Always read: it tells added from updated and which surplus chunks to delete.
        stored = store.document_states() if store.schema is not None else {}
        todo: list[tuple[int, StoredState | None]] = []
        for doc_id, copy in sorted(last.items(), key=lambda kv: kv[1].position):
            if copy.error is not None:
                stats.rejected.append(Rejected.from_error(copy.error, "(document)"))
                continue
            stats.seen += 1
            seen_ids.add(doc_id)
            old = stored.get(doc_id)
            if old is not None and skip_unchanged and old[0] == copy.content_hash:
                stats.unchanged += 1
                continue
            todo.append((copy.position, old))
        vanished = sorted(set(stored) - seen_ids) if sync else []
    except BaseException:
        spool.close()
        raise
    return Plan(spool, todo, stored, vanished)


# -- one batch's bookkeeping and write ------------------------------------------------------------


def account_encoded(stats: IndexStats, docs: list[Planned], encoded: EncodedBatch) -> tuple[list[Planned], list[Chunk]]:
    """Count one encoded batch into ``stats``.

    Documents rejected at encoding are dropped whole: a stored older version stays (and is
    not synced away). Returns the kept (document, stored state) pairs and the chunks whose
    sparse vector came out empty.
    """
    stats.encode_seconds += encoded.seconds
    stats.workers.add(encoded.worker)
    for step, seconds in encoded.stages.items():
        stats.work[step] = stats.work.get(step, 0.0) + seconds
    if encoded.rejected:
        stats.rejected.extend(encoded.rejected)
        stats.seen -= len(encoded.rejected)
        bad = {r.record for r in encoded.rejected}
        docs = [(d, old) for d, old in docs if d.id not in bad]
    empty = [r.chunk for r in encoded.records if r.sparse is not None and not len(r.sparse)]
    stats.empty_sparse += len(empty)
    stats.added += sum(1 for _, old in docs if old is None)
    stats.updated += sum(1 for _, old in docs if old is not None)
    stats.chunks += len(encoded.records)
    return docs, empty


def stale_point_ids(docs: Sequence[Planned], n_chunks: Sequence[int]) -> list[str]:
    """Point ids of the surplus chunks of documents that got shorter (now ``n`` chunks, stored more)."""
    return [
        Chunk(d.id, i, "", 0, 0).point_id
        for (d, old), n in zip(docs, n_chunks)
        if old is not None
        for i in range(n, old[1])
    ]


def write_batch(store: IndexSink, records: Sequence[PointRecord], stale: Sequence[str]) -> float:
    """Delete surplus chunks, then upsert every other chunk, then chunk 0; returns the seconds.

    Chunk 0 carries the document's content hash, so it is written last: a run that dies (or a
    write that fails) anywhere before it leaves the *old* hash behind, and the next run
    re-encodes and rewrites the whole document. Deleting the surplus first means a crash can
    never leave orphan chunks behind a new hash.
    """
    t = time.perf_counter()
    if stale:
        store.delete_points(list(stale))
    store.upsert(sorted(records, key=lambda r: r.chunk.chunk == 0))  # stable: chunk 0s last
    return time.perf_counter() - t


# -- the loop -------------------------------------------------------------------------------------


def _prepare_run(
    store: IndexSink,
    items: Iterable[SourceItem | Document],
    wanted: CollectionSchema,
    stats: IndexStats,
    skip_unchanged: bool,
    sync: bool,
    allow_mass_delete: bool,
    max_delete_fraction: float,
    batch_size: int,
    log: logging.Logger | logging.LoggerAdapter,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Plan, list[list[tuple[int, StoredState | None]]]]:
    """What :func:`run_index` will write (the plan, and its batches as spool positions): the plan
    checked (encoders, mass deletes), the collection created if it is new and there is something
    to write, the plan logged. The caller closes the plan."""
    if store.schema is not None:
        store.ensure_schema(wanted)  # refuses other encoders before anything is written
    plan = plan_index(store, items, stats, skip_unchanged=skip_unchanged, sync=sync, should_stop=should_stop)
    try:
        if plan.vanished and not allow_mass_delete:
            _refuse_mass_delete(len(plan.vanished), len(plan.stored), stats.seen, max_delete_fraction)
        if store.schema is None and plan.todo:
            if wanted.bm25:
                sample = [d for d, _ in plan.load(plan.todo[:AVG_LEN_SAMPLE])]
                wanted.bm25_avg_len = estimate_avg_len(store, sample)
            store.ensure_schema(wanted)
    except BaseException:
        plan.close()
        raise
    batches = plan.batches(batch_size)
    stats.batches = len(batches)
    stats.to_encode = len(plan.todo)
    log.info(
        "%d documents: %d to encode in %d batches, %d unchanged, %d rejected, %d duplicate ids",
        stats.seen,
        len(plan.todo),
        len(batches),
        stats.unchanged,
        len(stats.rejected),
        stats.duplicates,
    )
    if stats.conflicting_ids:
        log.warning(
            "%d id(s) given more than once with different text, the last copy kept: %s",
            len(stats.conflicting_ids),
            ", ".join(stats.conflicting_ids[:10]) + (" ..." if len(stats.conflicting_ids) > 10 else ""),
        )
    return plan, batches


def run_index(
    store: IndexSink,
    items: Iterable[SourceItem | Document],
    wanted: CollectionSchema,
    submit_encode: Callable[[list[Document]], Pending[EncodedBatch]],
    *,
    write: Callable[[list[PointRecord], list[str]], float] | None = None,
    delete_documents: Callable[[list[str]], int] | None = None,
    batch_size: int = 64,
    in_flight: int = 1,
    skip_unchanged: bool = True,
    sync: bool = False,
    allow_mass_delete: bool = False,
    max_delete_fraction: float = 0.5,
    on_batch: Callable[[IndexStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    stats: IndexStats | None = None,
    log: logging.Logger | logging.LoggerAdapter = logger,
) -> IndexStats:
    """Index a document stream into ``store``; ``sync=True`` also deletes documents absent from it.

    ``submit_encode`` starts encoding one batch and returns something with ``.result()``; up to
    ``in_flight`` batches are encoded while the oldest one is written by ``write`` (default: a
    direct :func:`write_batch`). Duplicate ids in one stream: the last one wins.

    A new collection is created only when there is something to write, with BM25's average
    document length measured on the documents being written. A sync that would delete more than
    ``max_delete_fraction`` of the collection, or that read no acceptable record at all, raises
    :class:`MassDeleteError` before anything is written, unless ``allow_mass_delete``.
    """
    stats = stats if stats is not None else IndexStats()
    bound_malloc_arenas()  # before the encoders start their threads: memory flat in corpus size
    write = write or (lambda records, stale: write_batch(store, records, stale))
    delete_documents = delete_documents or _direct_delete(store)
    t0 = time.perf_counter()

    t = time.perf_counter()
    plan, batches = _prepare_run(
        store,
        items,
        wanted,
        stats,
        skip_unchanged,
        sync,
        allow_mass_delete,
        max_delete_fraction,
        batch_size,
        log,
        should_stop,
    )
    stats.stages["read + plan"] = time.perf_counter() - t
    with plan:  # the spool is closed on every path, a failing progress callback's included
        if on_batch:
            on_batch(stats)  # the plan, before any batch: progress displays learn their total here
        t = time.perf_counter()
        _encode_and_write(plan, batches, submit_encode, write, in_flight, on_batch, should_stop, stats, log)
        stats.stages["encode + write"] = time.perf_counter() - t

    if sync:
        t = time.perf_counter()
        # In batches: bounded requests for server stores (Elasticsearch caps terms at 65,536),
        # and a run killed part-way has deleted whole documents only; the next run does the rest.
        for j in range(0, len(plan.vanished), batch_size):
            if should_stop is not None and should_stop():
                raise IndexInterrupted(
                    f"interrupted after deleting {stats.deleted} of {len(plan.vanished)} documents no longer in "
                    "the source; every batch is written: run the same command again to resume"
                )
            stats.deleted += delete_documents(plan.vanished[j : j + batch_size])
        if plan.vanished:
            log.info("deleted %d documents no longer in the source", stats.deleted)
        stats.stages["delete"] = time.perf_counter() - t
    t = time.perf_counter()
    if store.schema is not None:
        store.flush()
    stats.stages["flush"] = time.perf_counter() - t
    stats.seconds = time.perf_counter() - t0
    return stats


def _encode_and_write(
    plan: Plan,
    batches: list[list[tuple[int, StoredState | None]]],
    submit_encode: Callable[[list[Document]], Pending[EncodedBatch]],
    write: Callable[[list[PointRecord], list[str]], float],
    in_flight: int,
    on_batch: Callable[[IndexStats], None] | None,
    should_stop: Callable[[], bool] | None,
    stats: IndexStats,
    log: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Encode the batches (up to ``in_flight`` ahead, each read back from the spool when it is
    submitted) and write each as it comes back, in order; a stop request abandons the rest."""

    def finish(i: int, batch: list[Planned], pending: Pending[EncodedBatch]) -> None:
        encoded = result_unless_stopped(pending, should_stop, stop_now)
        batch, empty = account_encoded(stats, batch, encoded)
        if empty:
            log.warning(
                "%d chunk(s) got an empty sparse vector (stored; only dense/BM25 can find them), e.g. %r chunk %d",
                len(empty),
                empty[0].doc_id,
                empty[0].chunk,
            )
        if encoded.records:
            stale = stale_point_ids(batch, [encoded.n_chunks[d.id] for d, _ in batch])
            seconds = write(encoded.records, stale)
            stats.upsert_seconds += seconds
            stats.work["write"] = stats.work.get("write", 0.0) + seconds
        stats.batches_done += 1
        log.info(
            "batch %d/%d written: %d documents, %d chunks (encoded in %.2fs on %s)",
            i + 1,
            len(batches),
            len(batch),
            len(encoded.records),
            encoded.seconds,
            encoded.worker,
        )
        release_free_memory()  # the batch's tensors and texts are garbage now
        if on_batch:
            on_batch(stats)

    def stop_now() -> NoReturn:
        """Abandon the batches still being encoded (nothing of them is written) and stop."""
        for _, _, pending in queue:
            cancel = getattr(pending, "cancel", None)
            if cancel is not None:
                cancel()
        raise IndexInterrupted(
            f"interrupted after {stats.batches_done} of {stats.batches} batches; every written batch is "
            "whole: run the same command again to resume"
        )

    stopping = should_stop or (lambda: False)
    queue: deque[tuple[int, list[Planned], Pending[EncodedBatch]]] = deque()
    for i, refs in enumerate(batches):
        if stopping():
            stop_now()
        batch = plan.load(refs)
        queue.append((i, batch, submit_encode([d for d, _ in batch])))
        while len(queue) > in_flight:
            finish(*queue.popleft())
            if stopping():
                stop_now()
    while queue:
        finish(*queue.popleft())
        if stopping() and queue:
            stop_now()


def _refuse_mass_delete(n: int, stored: int, accepted: int, max_fraction: float) -> None:
    if accepted == 0:
        raise MassDeleteError(
            f"--sync would delete {n} of {stored} stored documents: the source has no acceptable record "
            "(empty, or every record rejected). Fix the source, or pass --allow-mass-delete"
        )
    if n > max_fraction * stored:
        raise MassDeleteError(
            f"--sync would delete {n} of {stored} stored documents ({n / stored:.0%}, more than the "
            f"{max_fraction:.0%} allowed); pass --allow-mass-delete if that is intended"
        )


def _direct_delete(store: IndexSink) -> Callable[[list[str]], int]:
    def delete(doc_ids: list[str]) -> int:
        store.delete_documents(doc_ids)
        return len(doc_ids)

    return delete


class Indexer:
    """Index documents into ``store`` with the given encoders, in this process.

    Args:
        batch_size: documents per encode/upsert batch.
        chunk_overlap: tokens shared by consecutive chunks of a long document.
        skip_unchanged: compare content hashes with the store and encode only what changed.
        chunking: ``False`` stores one point per document and lets the encoders truncate at
            their max length (what sentence-transformers' IR evaluators do; used for parity).
    """

    def __init__(
        self,
        store: IndexSink,
        sparse: Any = None,
        dense: Any = None,
        *,
        bm25: bool = True,
        batch_size: int = 64,
        chunk_overlap: int = 32,
        skip_unchanged: bool = True,
        chunking: bool = True,
    ):
        if sparse is None and dense is None and not bm25:
            raise ValueError("nothing to index with: give a sparse encoder, a dense encoder, or bm25=True")
        self.store, self.bm25 = store, bm25
        self.encoder = BatchEncoder(sparse, dense, chunk_overlap=chunk_overlap, chunking=chunking)
        self.batch_size = batch_size
        self.skip_unchanged = skip_unchanged

    @property
    def sparse(self) -> Any:
        return self.encoder.sparse

    @property
    def dense(self) -> Any:
        return self.encoder.dense

    def index(
        self,
        items: Iterable[SourceItem | Document],
        *,
        sync: bool = False,
        allow_mass_delete: bool = False,
        on_batch: Callable[[IndexStats], None] | None = None,
        dead_letter: str | os.PathLike[str] | None = None,
    ) -> IndexStats:
        """Index a document stream. ``sync=True`` also deletes stored documents absent from it.

        Rejected records are in ``stats.rejected`` and, with ``dead_letter``, appended to that
        JSONL file (see :mod:`.dead_letter`), also when the run fails part-way. One thread encodes
        the next batch while this thread writes the last one.
        """
        stats = IndexStats()
        started = run_timestamp()
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
                return run_index(
                    self.store,
                    items,
                    self.encoder.schema(self.bm25),
                    lambda docs: pool.submit(self.encoder.encode_documents, docs),
                    batch_size=self.batch_size,
                    skip_unchanged=self.skip_unchanged,
                    sync=sync,
                    allow_mass_delete=allow_mass_delete,
                    on_batch=on_batch,
                    stats=stats,
                )
        finally:
            if dead_letter is not None:
                write_dead_letter(dead_letter, stats.rejected, at=started)
