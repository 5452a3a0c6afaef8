"""`index` and `schedule`: run the ingestion flow once or on a cron schedule."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..connectors import IndexSink
    from ..ingestion.indexing import IndexStats
    from ..pipelines.config import PipelineConfig
    from ..pipelines.runtime import StopRequest

from .app import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, DEFAULT_STORE, app, console, err_console, fail, progress_bar


def index_with_progress(
    items,
    store_url: str,
    *,
    sparse_model: str | None,
    dense_model: str | None,
    bm25: bool = True,
    batch_size: int = 64,
    max_length: int | None = None,
    device: str | None = None,
    sync: bool = False,
    total: int | None = None,
    description: str = "indexing",
):
    """Index in this process with a progress bar (``quickstart``; ``index`` runs the Prefect flow)."""
    from ..connectors import open_index_sink
    from ..encoders.dense import DenseEncoder
    from ..encoders.sparse import SparseEncoder
    from ..ingestion.indexing import Indexer

    store = open_index_sink(store_url)
    with console.status("loading models"):
        sparse = (
            SparseEncoder(sparse_model, device=device, max_length=max_length, batch_size=batch_size)
            if sparse_model
            else None
        )
        dense = (
            DenseEncoder(dense_model, device=device, max_length=max_length, batch_size=batch_size)
            if dense_model
            else None
        )
    indexer = Indexer(store, sparse, dense, bm25=bm25, batch_size=batch_size)
    with progress_bar() as progress:
        task = progress.add_task(description, total=total, rate="")

        def on_batch(stats):
            done = stats.seen + len(stats.rejected) + stats.duplicates
            elapsed = max(time.perf_counter() - t0, 1e-9)
            progress.update(task, completed=done, rate=f"{stats.encoded / elapsed:.1f} docs/s")

        t0 = time.perf_counter()
        stats = indexer.index(items, sync=sync, on_batch=on_batch)
        progress.update(task, completed=stats.seen + len(stats.rejected) + stats.duplicates)
    store.optimize()
    return store, stats


class IndexProgress:
    """An index run's progress: a Rich bar on a terminal, one plain line per batch otherwise
    (logs and CI keep a record; the plan line and batch lines are what scripts wait for)."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.task: Any = None
        self.encoded = 0
        self.t0 = time.perf_counter()

    def __call__(self, stats: IndexStats) -> None:
        if stats.batches_done == 0:
            self._plan(stats)
            return
        docs, self.encoded = stats.encoded - self.encoded, stats.encoded
        rate = stats.encoded / max(time.perf_counter() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=stats.encoded, rate=f"{rate:.1f} docs/s")
            if stats.batches_done == stats.batches:
                self.bar.stop()
        else:
            console.print(
                f"batch {stats.batches_done}/{stats.batches} written: {docs} documents ({rate:.1f} docs/s)",
                soft_wrap=True,
            )

    def _plan(self, stats: IndexStats) -> None:
        console.print(
            f"{stats.seen} documents: {stats.to_encode} to encode in {stats.batches} batches, "
            f"{stats.unchanged} unchanged, {len(stats.rejected)} rejected, {stats.duplicates} duplicate ids",
            soft_wrap=True,
        )
        if stats.conflicting_ids:
            shown = ", ".join(escape(i) for i in stats.conflicting_ids[:10])
            more = " ..." if len(stats.conflicting_ids) > 10 else ""
            console.print(f"duplicate ids with different text (the last copy kept): {shown}{more}", soft_wrap=True)
        self.t0 = time.perf_counter()
        if console.is_terminal and stats.batches:
            self.bar = progress_bar()
            self.task = self.bar.add_task("encoding", total=stats.to_encode, rate="")
            self.bar.start()


def run_interactive(cfg: PipelineConfig, sink: IndexSink, stop: StopRequest) -> dict[str, Any]:
    """Run the index flow from a terminal on ``sink`` (the store, opened once): nothing at all
    when nothing changed, else against PREFECT_API_URL, or a temporary API of our own that no
    signal or crash of this process leaves behind; SIGINT/SIGTERM (handled by ``stop``, which
    the caller installed) stop it between batches."""
    from ..ingestion.indexing import IndexInterrupted
    from ..pipelines.planning import unchanged_summary

    unchanged = unchanged_summary(cfg, sink)
    if unchanged is not None:
        console.print(f"{unchanged['seen']} documents: nothing changed since the last run", soft_wrap=True)
        return unchanged
    from prefect.exceptions import TerminationSignal
    from prefect.settings import PREFECT_API_URL

    from ..pipelines.flows import run_pipeline
    from ..pipelines.runtime import STOPPED_BEFORE_START, temporary_prefect_api

    if stop.is_set():
        raise IndexInterrupted(STOPPED_BEFORE_START)
    api = contextlib.nullcontext() if PREFECT_API_URL.value() else temporary_prefect_api(stop=stop)
    with api:
        try:
            return run_pipeline(cfg, on_progress=IndexProgress(), stop=stop, sink=sink)
        except TerminationSignal:
            # SIGTERM in the instants Prefect's engine holds it (as the flow run starts or ends,
            # outside the body, where ``stop`` holds it): the engine records the run Crashed and
            # sends the signal on to ``stop``. It escaped as a traceback and exit 1.
            raise IndexInterrupted(
                "stopped as the flow run started or ended (Prefect recorded it Crashed): "
                "run the same command again to resume"
            ) from None


def quiet_libraries(verbose: bool) -> None:
    """Model-loading bars and Prefect's per-task lines drown an index run's own output: off unless
    ``--verbose`` (a user's own PREFECT_LOGGING_LEVEL wins). Set before those libraries load."""
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@app.command()
def index(
    source: Path | None = typer.Argument(
        None, help="A .jsonl/.csv/.tsv/.parquet file, a BEIR folder, or a folder of .txt/.md files (or use --config)."
    ),
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s", help="Store URL, e.g. qdrant-edge://./my-index."),
    sparse_model: str | None = typer.Option(
        None,
        help=f"SparseEncoder id or path ('none' to skip). Default: the collection's, else {DEFAULT_SPARSE_MODEL}.",
    ),
    dense_model: str | None = typer.Option(
        None,
        help=f"SentenceTransformer id or path ('none' to skip). Default: the collection's, else {DEFAULT_DENSE_MODEL}.",
    ),
    bm25: bool = typer.Option(True, help="Also build the store's native BM25 index."),
    batch_size: int = typer.Option(64, min=1),
    max_length: int | None = typer.Option(None, help="Tokens per chunk (default: the models' max length)."),
    device: str | None = typer.Option(None, help="cuda, cpu, ... (default: auto)."),
    sync: bool = typer.Option(False, "--sync", help="Delete stored documents that are no longer in the source."),
    allow_mass_delete: bool = typer.Option(
        False, "--allow-mass-delete", help="Let --sync delete more than half the collection, or read an empty source."
    ),
    id_field: str | None = typer.Option(None, help="Field holding the id (default: _id, then id)."),
    text_field: str = typer.Option("text"),
    title_field: str = typer.Option("title"),
    format: str | None = typer.Option(None, help="Source format (default: from the path)."),
    metadata_field: list[str] | None = typer.Option(
        None, "--metadata-field", help="Keep only these fields as metadata (repeatable)."
    ),
    chunk_overlap: int = typer.Option(32, min=0, help="Tokens shared by consecutive chunks of a long document."),
    dask_address: str | None = typer.Option(None, help="Encode on this Dask scheduler (tcp://host:8786)."),
    dask_workers: int | None = typer.Option(None, min=1, help="Encode on a local Dask cluster of N worker processes."),
    dead_letter: Path | None = typer.Option(None, help="Append rejected records to this JSONL file."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="A pipeline YAML/TOML file (then the other options are ignored)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's task logs and model loading."),
) -> None:
    """Encode a corpus and upsert it into a store, as a Prefect flow (incremental: unchanged
    documents are skipped; a killed run resumes by running it again).

    Uses the Prefect API at PREFECT_API_URL, or a temporary local one.
    """
    quiet_libraries(verbose)
    from ..connectors import StoreError, open_index_sink
    from ..ingestion.indexing import IndexInterrupted
    from ..pipelines.config import PipelineConfig, PipelineConfigError
    from ..pipelines.flows import StoppedWhileOptimizing, TooManyRejectedError
    from ..pipelines.planning import recorded_models
    from ..pipelines.runtime import StopRequest

    stop = StopRequest()
    sink: IndexSink | None = None  # the store, opened once: models, the no-op check and the run read it
    interrupted: IndexInterrupted | None = None
    with stop.installed():  # from the start: a signal while the store opens or the run plans stops it too
        try:
            if config is not None:
                cfg = PipelineConfig.from_file(config)
            else:
                if source is None:
                    fail("give a SOURCE path or --config FILE")
                sink = open_index_sink(store)
                recorded = recorded_models(sink)
                cfg = PipelineConfig.parse(
                    options_config(
                        source=source,
                        store=store,
                        sparse=sparse_model if sparse_model is not None else recorded[0],
                        dense=dense_model if dense_model is not None else recorded[1],
                        bm25=bm25,
                        device=device,
                        max_length=max_length,
                        batch_size=batch_size,
                        chunk_overlap=chunk_overlap,
                        sync=sync,
                        allow_mass_delete=allow_mass_delete,
                        fields={"id": id_field, "text": text_field, "title": title_field, "metadata": metadata_field},
                        format=format,
                        dask_address=dask_address,
                        dask_workers=dask_workers,
                        dead_letter=dead_letter,
                    ),
                    where="options",
                )
            if not cfg.source.path.exists():
                fail(f"{cfg.source.path} does not exist")
            if sink is None:
                sink = open_index_sink(cfg.store_url())
            summary = run_interactive(cfg, sink, stop)
        except IndexInterrupted as exc:
            interrupted = exc
            if isinstance(exc, StoppedWhileOptimizing):
                sink = None  # the engine is still optimizing it: closing would wait for that
        except TooManyRejectedError as exc:
            print_summary(exc.summary)
            fail(str(exc))
        except (StoreError, PipelineConfigError, ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        finally:
            if sink is not None:
                sink.close()
        if interrupted is not None:
            err_console.print(f"[bold yellow]stopped:[/] {interrupted}", soft_wrap=True)
            stop.exit()  # the store is closed; threads still loading a model or encoding are abandoned
        print_summary(summary)
        if stop.is_set():  # the signal came as the run finished: the user still asked to stop
            err_console.print(
                "[bold yellow]stopped:[/] the run had finished; every document is written", soft_wrap=True
            )
            stop.exit()


def options_config(
    *,
    source: Path,
    store: str,
    sparse: str,
    dense: str,
    bm25: bool,
    device: str | None,
    max_length: int | None,
    batch_size: int,
    chunk_overlap: int,
    sync: bool,
    allow_mass_delete: bool,
    fields: dict[str, Any],
    format: str | None,
    dask_address: str | None,
    dask_workers: int | None,
    dead_letter: Path | None,
) -> dict[str, Any]:
    """``index``'s options as the job-config mapping a YAML file would hold (one validation for both)."""
    dask = {"address": dask_address} if dask_address else ({"n_workers": dask_workers} if dask_workers else None)
    return {
        "source": {
            "path": str(source),
            "format": format,
            "fields": {**fields, "title": fields["title"] or None, "metadata": fields["metadata"] or None},
        },
        "store": store,
        "models": {"sparse": sparse, "dense": dense, "bm25": bm25, "device": device, "max_length": max_length},
        "batch_size": batch_size,
        "chunk_overlap": chunk_overlap,
        "sync": sync,
        "allow_mass_delete": allow_mass_delete,
        "dask": dask,
        "dead_letter": str(dead_letter) if dead_letter else None,
    }


def print_summary(s: dict) -> None:
    """A run summary (:meth:`IndexStats.summary`, also what the flow returns) as a table."""
    console.print(f"indexed into {escape(s['store'])}", overflow="fold")
    table = Table(
        show_header=True, caption=f"{s['docs_per_second']:.1f} docs/s · {s['seconds']:.1f} s", caption_justify="right"
    )
    cols = ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks")
    for col in cols:  # seven narrow columns: the table fits 80 columns whatever the numbers
        table.add_column(col, justify="right", no_wrap=True)
    table.add_row(*(str(s[k]) for k in cols))
    console.print(table)
    steps = s.get("docs_per_second_by_step") or {}
    if steps:  # encoding overlaps writing: each step's own rate shows which one bounds the run
        console.print("docs/s by step: " + " · ".join(f"{k} {v:,.1f}" for k, v in steps.items()))
    for r in s["rejected_records"][:20]:
        err_console.print(f"[yellow]rejected[/] {r}")
    if s["rejected"] > 20:
        err_console.print(f"[yellow]... and {s['rejected'] - 20} more rejected records[/]")


def require_prefect_server() -> None:
    """Schedules run only on a Prefect server: a temporary API dies with this process and never
    fires (Prefect itself says so), so serving against one would print "serving" and do nothing."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        fail(
            "scheduled runs need a Prefect server: start one with `prefect server start` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api`, then run this command again"
        )


@app.command()
def schedule(
    config: Path = typer.Option(..., "--config", "-c", help="The pipeline YAML/TOML file each run reads."),
    cron: str | None = typer.Option(None, help='Cron schedule, e.g. "0 * * * *" (default: the file\'s schedule.cron).'),
    timezone: str | None = typer.Option(
        None, help="IANA time zone of the cron schedule (default: the file's, else UTC)."
    ),
    name: str = typer.Option("scheduled", help="Deployment name."),
) -> None:
    """Serve the indexing flow as a Prefect deployment that re-runs on a cron schedule.

    Runs until stopped (Ctrl-C). Each run re-reads the config file, so edits apply to the next
    run. Needs a Prefect server (PREFECT_API_URL) for the schedule to survive this process.
    """
    from ..pipelines.config import PipelineConfig, PipelineConfigError, ScheduleConfig

    require_prefect_server()
    try:
        cfg = PipelineConfig.from_file(config)
        base = cfg.schedule
        if cron is None and base is None:
            fail(f'{config} has no schedule.cron; pass --cron "0 * * * *"')
        sched = ScheduleConfig(
            cron=cron or (base.cron if base else ""), timezone=timezone or (base.timezone if base else None)
        )
    except PipelineConfigError as exc:
        fail(str(exc))
    except ValueError as exc:  # pydantic's ValidationError for --cron/--timezone
        fail(f"invalid schedule: {exc}")
    from prefect.schedules import Cron

    from ..pipelines.flows import index_flow

    console.print(
        f"serving [bold]{index_flow.name}/{name}[/] on [bold]{sched.cron}[/] ({sched.timezone or 'UTC'}) for {config.resolve()}"
    )
    index_flow.serve(
        name=name,
        schedules=[Cron(sched.cron, timezone=sched.timezone or "UTC")],
        parameters={"config": str(config.resolve())},
        tags=["sparsehybrid"],
    )
