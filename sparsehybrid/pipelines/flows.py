"""The Prefect ingestion flow: read → plan → encode (per batch, on threads or Dask) → write.

It runs the one indexing loop, :func:`~sparsehybrid.ingestion.indexing.run_index` (selection by
content hash, chunking, encoding, surplus-chunk deletion, sync), plugging in Prefect tasks for
the stages that do work:

* The source is read as a stream in the flow's process (no task: a task's result would be the
  whole corpus in memory); the loop spools it to disk, compares content hashes with the store
  and cuts the documents that need encoding into batches, read back from the spool one at a time.
* ``encode-batch`` tasks are *submitted* to the task runner (threads by default, Dask workers
  with ``dask:`` in the config). Each process keeps one encoder per (model, device) in a module
  cache, so a worker loads its models once; with several GPUs each worker takes one.
* ``write-batch`` runs in the flow's process, with retries and exponential backoff. The
  embedded Qdrant Edge store admits one process, so workers return records instead of opening
  it; while batch n is written, the next batches are being encoded.

Resuming needs no checkpoint: point ids are deterministic and chunk 0 carries the document's
content hash, so a re-run after a crash (even ``kill -9``) skips every batch already written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from ..connectors import IndexSink, open_index_sink
from ..connectors.base import CollectionSchema, StoreError, StoreUnavailableError
from ..ingestion.dead_letter import run_timestamp, write_dead_letter
from ..ingestion.encoding import BatchEncoder, EncodedBatch
from ..ingestion.indexing import (
    IndexInterrupted,
    IndexStats,
    rejection_failure,
    result_unless_stopped,
    run_index,
    write_batch,
)
from ..ingestion.sources import SourceItem, open_source
from ..types import Document, PointRecord
from .config import DaskConfig, ModelsConfig, PipelineConfig, PipelineConfigError, SourceConfig
from .runtime import StopRequest

T = TypeVar("T")
FLOW_NAME = "sparsehybrid-index"
ARTIFACT_KEY = "sparsehybrid-index-summary"  # the prefix of every job's key


def artifact_key(cfg: PipelineConfig) -> str:
    """This job's artifact key: two jobs' summaries never interleave. From the job's name, else
    its store URL as written (credentials removed), as Prefect wants: lowercase, digits, dashes."""
    ident = cfg.name or urlsplit(cfg.store)._replace(netloc=urlsplit(cfg.store).hostname or "").geturl()
    slug = re.sub(r"[^a-z0-9]+", "-", ident.lower()).strip("-")[:60].strip("-")
    digest = hashlib.sha1(ident.encode("utf-8")).hexdigest()[:8]
    return f"{ARTIFACT_KEY}-{slug}-{digest}" if slug else f"{ARTIFACT_KEY}-{digest}"


class TooManyRejectedError(ValueError):
    """The run rejected more records than its job allows; carries the run summary."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


# -- one encoder per process (per GPU) ---------------------------------------------------------

_ENCODERS: dict[tuple, tuple[BatchEncoder, threading.Lock]] = {}
_ENCODERS_GUARD = threading.Lock()


def worker_device(device: str | None) -> str | None:
    """The device this process should encode on: with several GPUs, Dask worker i takes GPU i mod n."""
    if device not in (None, "cuda"):
        return device
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n <= 1:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
        idx = int(name) if str(name).lstrip("-").isdigit() else sum(map(ord, str(name)))
    except (ImportError, ValueError):  # not on a Dask worker
        idx = 0
    return f"cuda:{idx % n}"


def cached_encoder(models: ModelsConfig, chunk_overlap: int) -> tuple[BatchEncoder, threading.Lock]:
    """This process's encoders and the lock that serialises their use: fast tokenizers and one
    GPU are not meant to be driven by two threads at once."""
    device = worker_device(models.device)
    key = (models.sparse, models.dense, device, models.max_length, models.encode_batch_size, chunk_overlap)
    with _ENCODERS_GUARD:
        if key not in _ENCODERS:
            from ..encoders.dense import DenseEncoder
            from ..encoders.sparse import SparseEncoder

            sparse = dense = None
            if models.sparse:
                # queries=False: an index job encodes documents only, and the query path's ONNX
                # Runtime graphs cost ~270 MB for the two default models (issue 21).
                sparse = SparseEncoder(
                    models.sparse,
                    device=device,
                    max_length=models.max_length,
                    batch_size=models.encode_batch_size,
                    queries=False,
                )
            if models.dense:
                dense = DenseEncoder(
                    models.dense,
                    device=device,
                    max_length=models.max_length,
                    batch_size=models.encode_batch_size,
                    queries=False,
                )
            _ENCODERS[key] = (BatchEncoder(sparse, dense, chunk_overlap=chunk_overlap), threading.Lock())
        return _ENCODERS[key]


# -- tasks ---------------------------------------------------------------------------------------


def _retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a write only when the store may come back (unreachable, overloaded, a full disk being
    cleared); a wrong vector or a refused schema fails the same way every time."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, (StoreUnavailableError, ConnectionError, TimeoutError)) or (
        isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError)
    )


@task(name="describe-encoders", cache_policy=NO_CACHE)
def describe_encoders(models: ModelsConfig, chunk_overlap: int) -> CollectionSchema:
    """The collection schema the encoders imply (loads them on a worker, so the flow needn't)."""
    encoder, _ = cached_encoder(models, chunk_overlap)
    return encoder.schema(models.bm25)


def read_source(source: SourceConfig) -> Iterator[SourceItem]:
    """The source's records as a stream of Documents and Rejected (last duplicate id wins later)."""
    return open_source(source.path, source.fields.field_map(), source.format)


@task(name="encode-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def encode_batch(rows: list[dict[str, Any]], models: ModelsConfig, chunk_overlap: int) -> EncodedBatch:
    """Chunk and encode one batch with this process's cached encoders (bad vectors reject their document).

    Documents travel as plain dicts: on Dask, dataclass arguments do not survive as such.
    """
    encoder, lock = cached_encoder(models, chunk_overlap)
    with lock:
        return encoder.encode_documents([Document(**row) for row in rows])


@task(
    name="write-batch",
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_if_transient,
)
def write_batch_task(store: IndexSink, records: list[PointRecord], stale: list[str]) -> float:
    """Delete surplus chunks and upsert one batch (idempotent, so retrying is safe)."""
    return write_batch(store, records, stale)


@task(
    name="delete-vanished",
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=1),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_if_transient,
)
def delete_vanished(store: IndexSink, doc_ids: list[str]) -> int:
    """Delete whole documents (one bounded batch: server stores cap terms per request)."""
    store.delete_documents(doc_ids)
    return len(doc_ids)


# -- the flow ------------------------------------------------------------------------------------


def load_config(config: dict[str, Any] | str | PipelineConfig) -> PipelineConfig:
    """A config object, a dict, or the path of a YAML/TOML file (what a deployment passes)."""
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return PipelineConfig.from_file(config)
    return PipelineConfig.parse(config)


class UnawaitedThreadPoolTaskRunner(ThreadPoolTaskRunner):
    """Prefect's thread pool, except that a flow run leaving it does not wait for tasks still
    running: a run stopped by a signal abandons a model load or a batch being encoded (they cannot
    be interrupted mid-call) and ends at once, recorded Cancelled (issue 23). A run that ends
    normally has no task left running; pending tasks are cancelled either way."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        super().__exit__(exc_type, exc_value, traceback)


#: Encode tasks run on threads unless the config asks for Dask (typed loosely: Prefect's generic
#: runner types do not unify with the flow decorator's parameter).
_THREADS: Any = UnawaitedThreadPoolTaskRunner(max_workers=2)


@dataclass(frozen=True)
class RunHooks:
    """What a run started in this process hands its flow besides the config, never as a Prefect
    parameter (parameters are stored and shown): a progress callback, a stop request (SIGINT /
    SIGTERM between batches) and the values of the ``${VAR}`` references :func:`secret_free` put
    in the store URL. A deployment's runs have none of them."""

    on_progress: Callable[[IndexStats], None] | None = None
    stop: StopRequest | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    #: The store, already open in this process (the caller planned on it and closes it).
    sink: IndexSink | None = None

    def __repr__(self) -> str:  # the secrets never show up in logs or tracebacks
        return f"RunHooks(on_progress={self.on_progress!r}, stop={self.stop!r}, environ={sorted(self.environ)}, sink={self.sink!r})"


@flow(name=FLOW_NAME, task_runner=_THREADS, persist_result=False)
def index_flow(config: dict[str, Any] | str) -> Any:
    """Index the configured source into the configured store; returns the run summary.

    ``config`` is a :class:`PipelineConfig` as a dict, or the path of a YAML/TOML file.
    With ``dask:`` set, the batches run in a subflow on a ``DaskTaskRunner``.
    """
    return index_body(config, RunHooks())


def index_body(config: dict[str, Any] | str, hooks: RunHooks) -> Any:
    """The flow's body, with the hooks of the run (:func:`run_pipeline` wraps it in a flow of the
    same name whose closure holds them)."""
    try:
        cfg = load_config(config)
        if cfg.dask is None:
            return run_batches(cfg, hooks)

        @flow(name=FLOW_NAME + "-dask", task_runner=dask_task_runner(cfg.dask), persist_result=False)
        def index_on_dask(config: dict[str, Any]) -> Any:
            try:
                return run_batches(load_config(config), hooks)
            except USER_ERRORS as exc:
                return _failed(exc)

        return index_on_dask(config=cfg.model_dump(mode="json"))
    except USER_ERRORS as exc:
        return _failed(exc)


#: Errors that say what to fix (bad config, refused sync, encoder mismatch, store down): the run
#: fails with the message alone; anything else keeps its traceback for debugging.
USER_ERRORS = (StoreError, PipelineConfigError, ValueError, FileNotFoundError, IndexInterrupted)


def _failed(exc: BaseException) -> Any:
    """A Failed state carrying ``exc``: the caller of the flow gets ``exc`` raised, Prefect's UI
    shows the one-line message, and no traceback is logged for an error that is the user's to fix.
    A run stopped by its user (:class:`IndexInterrupted`) ends Cancelled instead: nothing failed."""
    from prefect.states import Cancelled, Failed

    if isinstance(exc, IndexInterrupted):
        return Cancelled(message=str(exc), data=exc)
    return Failed(message=str(exc), data=exc)


def dask_task_runner(dask: DaskConfig):
    from prefect_dask import DaskTaskRunner

    if dask.address:
        return DaskTaskRunner(address=dask.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": dask.n_workers,
            "threads_per_worker": dask.threads_per_worker,
            "processes": dask.processes,
            "dashboard_address": ":0",
        }
    )


def _encode_slots() -> int:
    """How many encode tasks to keep in flight: every Dask thread, or one ahead of the writer."""
    runner = getattr(get_run_context(), "task_runner", None)
    client = getattr(runner, "client", None)
    if client is not None and hasattr(client, "nthreads"):
        return max(1, sum(client.nthreads().values()))
    return 1


def run_batches(cfg: PipelineConfig, hooks: RunHooks) -> dict[str, Any]:
    """The flow body (runs inside a flow run). Rejected records reach the dead-letter file
    even when the run fails part-way."""
    stats = IndexStats()
    started = run_timestamp()
    try:
        return _run_batches(cfg, stats, hooks)
    finally:
        if cfg.dead_letter is not None:
            run = getattr(get_run_context(), "flow_run", None)
            write_dead_letter(cfg.dead_letter, stats.rejected, at=started, flow_run=str(run.id) if run else None)


def recorded_schema(models: ModelsConfig, schema: CollectionSchema | None) -> CollectionSchema | None:
    """The schema ``models`` imply, read from a collection built with exactly these models (None
    when there is no such collection: then the encoders must be loaded to describe themselves)."""
    from ..encoders.models import resolve_model

    if schema is None:
        return None
    want_sparse = resolve_model(models.sparse)[1] if models.sparse else None
    want_dense = resolve_model(models.dense)[1] if models.dense else None
    if (want_sparse, want_dense) != (schema.sparse_model, schema.dense_model):
        return None
    return CollectionSchema(
        sparse_model=schema.sparse_model,
        sparse_dim=schema.sparse_dim,
        dense_model=schema.dense_model,
        dense_dim=schema.dense_dim,
        bm25=models.bm25,
    )


def _as_is(value: T) -> T:
    """Hand ``value`` to a task without Prefect walking it for futures (record lists are large);
    typed as the value itself, so the tasks' signatures stay exact."""
    return cast(T, quote(value))


def _read_with_schema(
    cfg: PipelineConfig, store: IndexSink, stats: IndexStats, stop: StopRequest | None
) -> tuple[Iterator[SourceItem], CollectionSchema]:
    """The source's items (a stream) and the schema the configured models imply. An existing
    collection built with these models describes them: no model is loaded unless a batch needs
    encoding, and a stop does not wait for a model load."""
    wanted = recorded_schema(cfg.models, store.schema)
    described = describe_encoders.submit(cfg.models, cfg.chunk_overlap) if wanted is None else None
    items = read_source(cfg.source)
    if described is not None:
        t = time.perf_counter()
        wanted = result_unless_stopped(described, stop.is_set if stop else None, _stopped_before_writing)
        stats.stages["load models"] = time.perf_counter() - t
    elif stop is not None and stop.is_set():
        _stopped_before_writing()
    assert wanted is not None
    return items, wanted


def _stopped_before_writing() -> NoReturn:
    raise IndexInterrupted("stopped before the first batch, nothing written: run the same command again to resume")


class StoppedWhileOptimizing(IndexInterrupted):
    """Stopped during the store's optimize, which is left running on its thread: every document is
    written and flushed, but the store cannot be closed while the engine optimizes (the process
    exits instead; the engine's files are crash-safe, as after ``kill -9``)."""


def _optimize(store: IndexSink, stop: StopRequest | None) -> None:
    """``store.optimize()``, on a thread that a stop does not wait for (a large collection's
    optimize takes minutes and the engine cannot interrupt it)."""
    if stop is None:
        store.optimize()
        return
    done: Future[None] = Future()

    def optimize() -> None:
        try:
            store.optimize()
            done.set_result(None)
        except BaseException as exc:  # handed to the waiting thread
            done.set_exception(exc)

    threading.Thread(target=optimize, name="optimize-store", daemon=True).start()

    def stopped() -> NoReturn:
        raise StoppedWhileOptimizing(
            "stopped while the store was optimizing; every document is written: run the same command again "
            "to resume (nothing is left to write; the next run that writes optimizes the store)"
        )

    result_unless_stopped(done, stop.is_set, stopped)


def _run_batches(cfg: PipelineConfig, stats: IndexStats, hooks: RunHooks) -> dict[str, Any]:
    log = get_run_logger()
    t0 = time.perf_counter()
    store = hooks.sink if hooks.sink is not None else open_index_sink(cfg.store_url(hooks.environ))
    log.info("indexing %s into %s", cfg.source.path, store.url)
    # Prefect's engine installs its own SIGTERM handler when the flow starts: an interactive
    # run's stop request takes over again for the body (and gives it back afterwards).
    stop = hooks.stop
    signals = stop.installed() if stop is not None else contextlib.nullcontext()
    store_busy = False
    with signals:
        try:
            items, wanted = _read_with_schema(cfg, store, stats, stop)

            def submit_encode(docs: list[Document]) -> Any:
                rows = [dataclasses.asdict(d) for d in docs]
                return encode_batch.submit(rows, cfg.models, cfg.chunk_overlap)

            run_index(
                store,
                items,
                wanted,
                submit_encode,
                write=lambda records, stale: write_batch_task(_as_is(store), _as_is(records), _as_is(stale)),
                delete_documents=lambda doc_ids: delete_vanished(_as_is(store), doc_ids),
                batch_size=cfg.batch_size,
                in_flight=_encode_slots(),
                sync=cfg.sync,
                on_batch=hooks.on_progress,
                should_stop=stop.is_set if stop is not None else None,
                allow_mass_delete=cfg.allow_mass_delete,
                max_delete_fraction=cfg.max_delete_fraction,
                stats=stats,
                log=log,
            )
            if stats.encoded or stats.deleted:
                t = time.perf_counter()
                _optimize(store, stop)
                stats.stages["optimize"] = time.perf_counter() - t
        except StoppedWhileOptimizing:
            store_busy = True
            raise
        finally:
            if hooks.sink is None and not store_busy:
                store.close()
    stats.seconds = time.perf_counter() - t0
    for r in stats.rejected[:20]:
        log.warning("rejected %s", r)
    summary = stats.summary(store.url)
    failure = rejection_failure(stats, cfg.max_reject_fraction)
    if failure:
        summary["failed"] = failure
    publish_summary(cfg, summary, log)
    log.info(
        "done: %d seen, %d added, %d updated, %d unchanged, %d deleted, %d rejected in %.1fs (%.1f docs/s)",
        stats.seen,
        stats.added,
        stats.updated,
        stats.unchanged,
        stats.deleted,
        len(stats.rejected),
        stats.seconds,
        stats.docs_per_second,
    )
    if failure:
        raise TooManyRejectedError(f"run failed: {failure}", summary)
    return summary


def publish_summary(cfg: PipelineConfig, summary: dict[str, Any], log: Any) -> None:
    """The run summary as a Prefect artifact. The data is written by now: a report that cannot be
    filed (the Prefect API gone, overloaded) is a warning, never a failed job (issue 23)."""
    try:
        create_markdown_artifact(
            markdown=summary_markdown(summary), key=artifact_key(cfg), description="sparsehybrid indexing run"
        )
    except Exception as exc:  # httpx/Prefect errors: every batch is already written
        log.warning(
            "the run summary artifact was not saved (%s: %s); the documents are written",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        summary["artifact_error"] = f"{type(exc).__name__}: {exc}"


def summary_markdown(s: dict[str, Any]) -> str:
    """The run summary as the Markdown of the Prefect artifact."""
    rows = [
        ("documents seen", s["seen"]),
        ("added", s["added"]),
        ("updated", s["updated"]),
        ("unchanged", s["unchanged"]),
        ("deleted", s["deleted"]),
        ("rejected", s["rejected"]),
        ("duplicate ids", s["duplicates"]),
        ("chunks written", s["chunks"]),
        ("batches", s["batches"]),
        ("encode workers", s["encode_workers"]),
        ("throughput (encoded docs/s)", s["docs_per_second"]),
        ("total seconds", s["seconds"]),
        ("encode seconds (summed over workers)", s["encode_seconds"]),
        ("write seconds", s["upsert_seconds"]),
    ]
    if s.get("empty_sparse"):
        rows.append(("chunks with an empty sparse vector", s["empty_sparse"]))
    lines = [f"# Indexing run into `{s['store']}`", ""]
    if s.get("failed"):
        lines += [f"**Run failed:** {s['failed']}", ""]
    lines += ["| | |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Time per stage (wall seconds)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["stages"].items()]
    if s["rejected_records"]:
        lines += ["", "## Rejected records", ""] + [f"- {r}" for r in s["rejected_records"]]
    return "\n".join(lines) + "\n"


def run_pipeline(
    cfg: PipelineConfig,
    on_progress: Callable[[IndexStats], None] | None = None,
    stop: StopRequest | None = None,
    sink: IndexSink | None = None,
) -> dict[str, Any]:
    """Run :func:`index_flow` for ``cfg`` (against PREFECT_API_URL, or a temporary local API).

    ``on_progress`` is called with the run's stats once planned and after every batch; with
    ``stop``, SIGINT/SIGTERM stop the run between batches (:class:`IndexInterrupted`); with
    ``sink``, the run writes that open store (the caller's, which it planned on and closes)
    instead of opening ``cfg``'s. Returns the run summary; a failed run raises its error.
    """
    handed, env = secret_free(cfg)
    hooks = RunHooks(on_progress, stop, env, sink)

    @flow(name=FLOW_NAME, task_runner=_THREADS, persist_result=False)
    def index_flow_run(config: dict[str, Any]) -> Any:
        """:func:`index_flow` with this run's hooks (in the closure, not in the parameters)."""
        if stop is not None:  # a second signal records the run Cancelled itself: the engine cannot
            from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL

            run = getattr(get_run_context(), "flow_run", None)
            stop.attach(run.id if run else None, PREFECT_API_URL.value(), PREFECT_API_KEY.value())
        return index_body(config, hooks)

    try:
        return cast(dict[str, Any], index_flow_run(config=handed.model_dump(mode="json")))
    finally:
        if stop is not None:
            stop.attach(None)


def secret_free(cfg: PipelineConfig) -> tuple[PipelineConfig, dict[str, str]]:
    """``cfg`` as Prefect may see it: a store URL with credentials in it (user:password@, or a
    key/token/password option) becomes a ``${VAR}`` reference, and the returned mapping holds its
    value, handed to the flow in :class:`RunHooks` (never put in ``os.environ``). Prefect stores
    flow-run parameters in its database and shows them in its UI; the flow expands the reference
    when it opens the store."""
    parts = urlsplit(cfg.store)
    secret_query = re.search(r"(key|token|password|secret)", parts.query, re.IGNORECASE)
    if "${" in cfg.store or not (parts.username or parts.password or secret_query):
        return cfg, {}
    safe = parts._replace(netloc=parts.hostname or "", query="").geturl()
    name = "SPARSEHYBRID_STORE_URL_" + hashlib.sha1(safe.encode("utf-8")).hexdigest()[:10].upper()
    return cfg.model_copy(update={"store": "${" + name + "}", "name": cfg.name or safe}), {name: cfg.store}
