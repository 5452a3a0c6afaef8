"""`search` and `info`: query an index and describe what it holds."""

from __future__ import annotations

import json
from typing import cast

import typer
from rich.table import Table

from ..types import SearchMode
from .app import DEFAULT_STORE, app, console, fail


def print_hits(hits, query: str, show_text: int = 160) -> None:
    table = Table(title=f"[bold]{query}[/]", show_lines=False, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("doc", overflow="fold", max_width=28)
    table.add_column("score", justify="right", width=8)
    table.add_column("text", overflow="fold", ratio=3)
    table.add_column("why", overflow="fold", ratio=2)
    for i, h in enumerate(hits, 1):
        text = (h.title + " — " if h.title else "") + h.text.replace("\n", " ")
        table.add_row(
            str(i),
            h.doc_id,
            f"{h.score:.4f}",
            text[:show_text] + ("…" if len(text) > show_text else ""),
            h.explanation.summary(),
        )
    console.print(table)


@app.command()
def search(
    query: str = typer.Argument(..., help="The query text."),
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s"),
    mode: str = typer.Option("hybrid", help="sparse, dense, bm25 or hybrid."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1),
    candidates: int = typer.Option(100, min=1, help="Candidates per retriever before fusion."),
    rerank: bool = typer.Option(False, "--rerank", help="Rerank the fused top with a cross-encoder."),
    reranker: str | None = typer.Option(None, help="CrossEncoder id or path (needed for --rerank)."),
    rerank_top: int = typer.Option(50, min=1),
    fusion: str = typer.Option("rrf", help="rrf, weighted or dbsf."),
    rrf_k: int = typer.Option(60, min=0),
    filter: str | None = typer.Option(None, "--filter", help='JSON, e.g. \'{"lang": "en"}\'.'),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
    device: str | None = typer.Option(None),
) -> None:
    """Search an index; the encoders are the ones the index was built with."""
    from ..connectors import StoreError, open_store
    from ..search import open_searcher

    if rerank and not reranker:
        fail("--rerank needs --reranker MODEL (a CrossEncoder hub id or local path); no cross-encoder ships offline")
    try:
        flt = json.loads(filter) if filter else None
    except json.JSONDecodeError as exc:
        fail(f"--filter is not valid JSON: {exc}")
    try:
        st = open_store(store)
        searcher = open_searcher(
            st,
            use_sparse=mode in ("sparse", "hybrid"),
            use_dense=mode in ("dense", "hybrid"),
            reranker=reranker if rerank else None,
            device=device,
            fusion=fusion,
            rrf_k=rrf_k,
        )
        hits = searcher.search(
            query,
            top_k=top_k,
            mode=cast(SearchMode, mode),
            candidates=candidates,
            rerank=rerank,
            rerank_top=rerank_top,
            filter=flt,
        )
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    else:
        print_hits(hits, query)
        console.print(f"[dim]{hits.timing.total * 1000:.1f} ms[/]")
    st.close()


@app.command()
def info(store: str = typer.Option(DEFAULT_STORE, "--store", "-s")) -> None:
    """What an index holds: counts, models, dimensions, metadata fields."""
    from ..connectors import StoreError, open_store

    try:
        st = open_store(store)
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    schema = st.schema
    if schema is None:
        fail(f"{st.url} holds no collection yet")
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
    size = st.disk_size()
    if size is not None:
        rows.append(("size on disk", f"{size / 1e6:.1f} MB"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    st.close()
