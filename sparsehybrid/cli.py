"""The ``sparsehybrid`` command line: index, search, info, quickstart (and more as they land)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The temporary local Prefect API our commands start has no reason to phone home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(help="Learned-sparse + dense hybrid search.", no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors stay on one line: paths stay copyable

DEFAULT_STORE = "qdrant-edge://./my-index"
NONE_WORDS = {"none", "off", "no", ""}


def _model_or_none(name: str | None) -> str | None:
    return None if name is None or name.lower() in NONE_WORDS else name


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)


def run_index(
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
    """Index with a progress bar; shared by ``index`` and ``quickstart``."""
    from .connectors import open_store
    from .encoders.dense import DenseEncoder
    from .encoders.sparse import SparseEncoder
    from .pipelines.indexing import Indexer

    store = open_store(store_url)
    with console.status("loading models"):
        sparse = SparseEncoder(sparse_model, device=device, max_length=max_length, batch_size=batch_size) if sparse_model else None
        dense = DenseEncoder(dense_model, device=device, max_length=max_length, batch_size=batch_size) if dense_model else None
    indexer = Indexer(store, sparse, dense, bm25=bm25, batch_size=batch_size)
    with _progress() as progress:
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


def _print_stats(stats, store) -> None:
    table = Table(title=f"indexed into {store.url}", show_header=True)
    for col in ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks", "docs/s", "seconds"):
        table.add_column(col, justify="right")
    d = stats.as_dict()
    table.add_row(*(str(d[k]) for k in ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks")), f"{d['docs_per_second']:.1f}", f"{d['seconds']:.1f}")
    console.print(table)
    for r in stats.rejected[:20]:
        err_console.print(f"[yellow]rejected[/] {r}")
    if len(stats.rejected) > 20:
        err_console.print(f"[yellow]... and {len(stats.rejected) - 20} more rejected records[/]")


@app.command()
def index(
    source: Optional[Path] = typer.Argument(None, help="A .jsonl/.csv/.tsv/.parquet file, a BEIR folder, or a folder of .txt/.md files (or use --config)."),
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s", help="Store URL, e.g. qdrant-edge://./my-index."),
    sparse_model: str = typer.Option("splade-tiny", help="SparseEncoder id or path ('none' to skip)."),
    dense_model: str = typer.Option("all-MiniLM-L6-v2", help="SentenceTransformer id or path ('none' to skip)."),
    bm25: bool = typer.Option(True, help="Also build the store's native BM25 index."),
    batch_size: int = typer.Option(64, min=1),
    max_length: Optional[int] = typer.Option(None, help="Tokens per chunk (default: the models' max length)."),
    device: Optional[str] = typer.Option(None, help="cuda, cpu, ... (default: auto)."),
    sync: bool = typer.Option(False, "--sync", help="Delete stored documents that are no longer in the source."),
    id_field: Optional[str] = typer.Option(None, help="Field holding the id (default: _id, then id)."),
    text_field: str = typer.Option("text"),
    title_field: str = typer.Option("title"),
    format: Optional[str] = typer.Option(None, help="Source format (default: from the path)."),
    metadata_field: Optional[list[str]] = typer.Option(None, "--metadata-field", help="Keep only these fields as metadata (repeatable)."),
    chunk_overlap: int = typer.Option(32, min=0, help="Tokens shared by consecutive chunks of a long document."),
    dask_address: Optional[str] = typer.Option(None, help="Encode on this Dask scheduler (tcp://host:8786)."),
    dask_workers: Optional[int] = typer.Option(None, min=1, help="Encode on a local Dask cluster of N worker processes."),
    dead_letter: Optional[Path] = typer.Option(None, help="Append rejected records to this JSONL file."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="A pipeline YAML/TOML file (then the other options are ignored)."),
) -> None:
    """Encode a corpus and upsert it into a store, as a Prefect flow (incremental: unchanged
    documents are skipped; a killed run resumes by running it again).

    Uses the Prefect API at PREFECT_API_URL, or a temporary local one.
    """
    from .connectors import StoreError
    from .pipelines.config import PipelineConfig, PipelineConfigError

    try:
        if config is not None:
            cfg = PipelineConfig.from_file(config)
        else:
            if source is None:
                _fail("give a SOURCE path or --config FILE")
            cfg = PipelineConfig.parse({
                "source": {"path": str(source), "format": format, "fields": {"id": id_field, "text": text_field, "title": title_field or None, "metadata": metadata_field or None}},
                "store": store,
                "models": {"sparse": sparse_model, "dense": dense_model, "bm25": bm25, "device": device, "max_length": max_length},
                "batch_size": batch_size, "chunk_overlap": chunk_overlap, "sync": sync,
                "dask": {"address": dask_address} if dask_address else ({"n_workers": dask_workers} if dask_workers else None),
                "dead_letter": str(dead_letter) if dead_letter else None,
            }, where="options")
        if not cfg.source.path.exists():
            _fail(f"{cfg.source.path} does not exist")
        from .pipelines.flows import run_pipeline

        summary = run_pipeline(cfg)
    except (StoreError, PipelineConfigError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    """The flow's run summary as a table (the same columns as an in-process index run)."""
    table = Table(title=f"indexed into {s['store']}", show_header=True)
    cols = ("seen", "added", "updated", "unchanged", "deleted", "rejected", "chunks")
    for col in cols + ("docs/s", "seconds"):
        table.add_column(col, justify="right")
    table.add_row(*(str(s[k]) for k in cols), f"{s['docs_per_second']:.1f}", f"{s['seconds']:.1f}")
    console.print(table)
    for r in s["rejected_records"][:20]:
        err_console.print(f"[yellow]rejected[/] {r}")
    if s["rejected"] > 20:
        err_console.print(f"[yellow]... and {s['rejected'] - 20} more rejected records[/]")


@app.command()
def schedule(
    config: Path = typer.Option(..., "--config", "-c", help="The pipeline YAML/TOML file each run reads."),
    cron: Optional[str] = typer.Option(None, help='Cron schedule, e.g. "0 * * * *" (default: the file\'s schedule.cron).'),
    timezone: Optional[str] = typer.Option(None, help="IANA time zone of the cron schedule (default: the file's, else UTC)."),
    name: str = typer.Option("scheduled", help="Deployment name."),
) -> None:
    """Serve the indexing flow as a Prefect deployment that re-runs on a cron schedule.

    Runs until stopped (Ctrl-C). Each run re-reads the config file, so edits apply to the next
    run. Needs a Prefect server (PREFECT_API_URL) for the schedule to survive this process.
    """
    from .pipelines.config import PipelineConfig, PipelineConfigError, ScheduleConfig

    try:
        cfg = PipelineConfig.from_file(config)
        if cron is None and cfg.schedule is None:
            _fail(f"{config} has no schedule.cron; pass --cron \"0 * * * *\"")
        sched = ScheduleConfig(cron=cron or cfg.schedule.cron, timezone=timezone or (cfg.schedule.timezone if cfg.schedule else None))
    except PipelineConfigError as exc:
        _fail(str(exc))
    except ValueError as exc:  # pydantic's ValidationError for --cron/--timezone
        _fail(f"invalid schedule: {exc}")
    from prefect.schedules import Cron

    from .pipelines.flows import index_flow

    console.print(f"serving [bold]{index_flow.name}/{name}[/] on [bold]{sched.cron}[/] ({sched.timezone or 'UTC'}) for {config.resolve()}")
    index_flow.serve(
        name=name,
        schedules=[Cron(sched.cron, timezone=sched.timezone or "UTC")],
        parameters={"config": str(config.resolve())},
        tags=["sparsehybrid"],
    )


def _print_hits(hits, query: str, show_text: int = 160) -> None:
    table = Table(title=f"[bold]{query}[/]", show_lines=False, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("doc", overflow="fold", max_width=28)
    table.add_column("score", justify="right", width=8)
    table.add_column("text", overflow="fold", ratio=3)
    table.add_column("why", overflow="fold", ratio=2)
    for i, h in enumerate(hits, 1):
        text = (h.title + " — " if h.title else "") + h.text.replace("\n", " ")
        table.add_row(str(i), h.doc_id, f"{h.score:.4f}", text[:show_text] + ("…" if len(text) > show_text else ""), h.explanation.summary())
    console.print(table)


@app.command()
def search(
    query: str = typer.Argument(..., help="The query text."),
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s"),
    mode: str = typer.Option("hybrid", help="sparse, dense, bm25 or hybrid."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1),
    candidates: int = typer.Option(100, min=1, help="Candidates per retriever before fusion."),
    rerank: bool = typer.Option(False, "--rerank", help="Rerank the fused top with a cross-encoder."),
    reranker: Optional[str] = typer.Option(None, help="CrossEncoder id or path (needed for --rerank)."),
    rerank_top: int = typer.Option(50, min=1),
    fusion: str = typer.Option("rrf", help="rrf, weighted or dbsf."),
    rrf_k: int = typer.Option(60, min=0),
    filter: Optional[str] = typer.Option(None, "--filter", help='JSON, e.g. \'{"lang": "en"}\'.'),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Search an index; the encoders are the ones the index was built with."""
    from .connectors import StoreError, open_store
    from .search import open_searcher

    if rerank and not reranker:
        _fail("--rerank needs --reranker MODEL (a CrossEncoder hub id or local path); no cross-encoder ships offline")
    try:
        flt = json.loads(filter) if filter else None
    except json.JSONDecodeError as exc:
        _fail(f"--filter is not valid JSON: {exc}")
    try:
        st = open_store(store)
        searcher = open_searcher(
            st, use_sparse=mode in ("sparse", "hybrid"), use_dense=mode in ("dense", "hybrid"),
            reranker=reranker if rerank else None, device=device, fusion=fusion, rrf_k=rrf_k,
        )
        hits = searcher.search(query, top_k=top_k, mode=mode, candidates=candidates, rerank=rerank, rerank_top=rerank_top, filter=flt)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    else:
        _print_hits(hits, query)
        console.print(f"[dim]{searcher.last_timing.total * 1000:.1f} ms[/]")
    st.close()


@app.command()
def info(store: str = typer.Option(DEFAULT_STORE, "--store", "-s")) -> None:
    """What an index holds: counts, models, dimensions, metadata fields."""
    from .connectors import StoreError, open_store

    try:
        st = open_store(store)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
    schema = st.schema
    if schema is None:
        _fail(f"{st.url} holds no collection yet")
    docs = len(st.document_states())
    table = Table(title=st.url, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        ("documents", str(docs)),
        ("points (chunks)", str(st.count())),
        ("sparse model", f"{schema.sparse_model} (vocab {schema.sparse_dim})" if schema.sparse_model else "-"),
        ("dense model", f"{schema.dense_model} (dim {schema.dense_dim})" if schema.dense_model else "-"),
        ("bm25", f"{schema.bm25_language}, avg_len {schema.bm25_avg_len:.1f}" if schema.bm25 else "-"),
        ("metadata fields", ", ".join(f"{k}:{v}" for k, v in sorted(schema.metadata_fields.items())) or "-"),
    ]
    if hasattr(st, "disk_size"):
        rows.append(("size on disk", f"{st.disk_size() / 1e6:.1f} MB"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    st.close()


@app.command()
def quickstart(
    store: str = typer.Option("qdrant-edge://./.sparsehybrid/quickstart", "--store", "-s"),
    limit: int = typer.Option(1500, min=10, help="How many standard-library docstrings to index."),
    dense: bool = typer.Option(True, help="Also index dense (MiniLM) vectors."),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Index the standard library's docstrings with the offline default models, then search them."""
    from .connectors import open_store
    from .quickstart import EXAMPLE_QUERIES, stdlib_documents
    from .search import open_searcher

    t0 = time.perf_counter()
    with console.status("collecting standard-library docstrings"):
        docs = stdlib_documents(limit)
    console.print(f"corpus: {len(docs)} docstrings of the Python {'.'.join(map(str, __import__('sys').version_info[:2]))} standard library")
    st, stats = run_index(
        docs, store, sparse_model="splade-tiny", dense_model="all-MiniLM-L6-v2" if dense else None,
        batch_size=64, max_length=256, device=device, total=len(docs), description="indexing docstrings",
    )
    _print_stats(stats, st)
    searcher = open_searcher(st, device=device)
    latencies = []
    for q in EXAMPLE_QUERIES:
        hits = searcher.search(q, top_k=3, mode="hybrid")
        latencies.append(searcher.last_timing.total)
        _print_hits(hits, q, show_text=120)
    q = "read and write compressed archives"
    hits = searcher.search(q, top_k=3, mode="hybrid", filter={"kind": "class"})
    _print_hits(hits, q + '  [filter {"kind": "class"}]', show_text=120)
    latencies.sort()
    size = st.disk_size() / 1e6 if hasattr(st, "disk_size") else float("nan")
    console.print(
        f"[bold green]quickstart done[/] in {time.perf_counter() - t0:.1f} s · index {size:.1f} MB at {st.url} · "
        f"p50 hybrid search {latencies[len(latencies) // 2] * 1000:.1f} ms"
    )
    console.print(f"try: sparsehybrid search \"your question\" --store {st.url}")
    st.close()


@app.command()
def bench(
    datasets: list[Path] = typer.Argument(..., help="One or more BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."),
    store: Optional[str] = typer.Option(None, "--store", "-s", help="Store URL; '{dataset}' is replaced by the folder name (default: qdrant-edge://<out>/index-<dataset>-<hash>)."),
    sparse_model: str = typer.Option("splade-tiny", help="SparseEncoder id or path ('none' to skip)."),
    dense_model: str = typer.Option("all-MiniLM-L6-v2", help="SentenceTransformer id or path ('none' to skip)."),
    reranker: Optional[str] = typer.Option(None, help="CrossEncoder id or path: adds a +Rerank row per method."),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to evaluate."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Folder for the table, CSV, JSON, run files and charts."),
    candidates: int = typer.Option(100, min=10, help="Results per query (and candidates per retriever / reranked)."),
    rrf_k: int = typer.Option(60, min=0),
    parity: bool = typer.Option(False, "--parity", help="Also compare Sparse/Dense NDCG@10 with sentence-transformers' evaluators (documents are truncated, not chunked, as they do)."),
    max_queries: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N judged queries per dataset."),
    batch_size: int = typer.Option(32, min=1),
    max_length: Optional[int] = typer.Option(None, help="Tokens per document/chunk (default: the models' max length)."),
    bm25: bool = typer.Option(True, help="Also benchmark the store's native BM25."),
    device: Optional[str] = typer.Option(None),
) -> None:
    """Retrieve-then-rerank benchmark on BEIR folders (a Prefect flow): NDCG@10, MRR@10, MAP@100, Recall@100, latency."""
    from .connectors import StoreError
    from .pipelines.beir import BeirFormatError
    from .pipelines.bench import BenchConfig
    from .pipelines.bench import bench as run_bench_flow

    for d in datasets:
        if not (d / "corpus.jsonl").exists():
            _fail(f"{d} is not a BEIR folder (no corpus.jsonl)")
    t0 = time.perf_counter()
    try:
        cfg = BenchConfig(
            datasets=[str(d) for d in datasets], out=str(out), store=store, sparse_model=_model_or_none(sparse_model),
            dense_model=_model_or_none(dense_model), reranker=reranker, split=split, candidates=candidates, rrf_k=rrf_k,
            parity=parity, max_queries=max_queries, batch_size=batch_size, max_length=max_length, device=device, bm25=bm25,
        )
        report = run_bench_flow(cfg)
    except (StoreError, BeirFormatError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    skipped = {n: d["queries_skipped_unjudged"] + d["queries_skipped_no_relevant"] for n, d in report["datasets"].items()}
    if any(skipped.values()):
        console.print("queries skipped (no relevant judgement): " + ", ".join(f"{n} {k}" for n, k in skipped.items()))
    console.print(f"[bold green]bench done[/] in {time.perf_counter() - t0:.0f} s · results in {out}/ (results.md, results.csv, results.json, runs/, ndcg10.png, quality_latency.png)")
    if report.get("parity_ok") is False:
        _fail("parity check failed: see the parity table above")


if __name__ == "__main__":
    app()
