"""`search` and `info`: query an index and describe what it holds."""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..connectors.base import StoreError
from ..fusion import FusionSetting
from .app import DEFAULT_STORE, app, console, fail

#: What a failing store or a bad request raises: each is reported as one line, never a traceback.
CLI_ERRORS: tuple[type[BaseException], ...] = (StoreError, ValueError, OSError)


def print_hits(hits, query: str, show_text: int = 160) -> None:
    """Hits as a list readable at 80 columns: rank, id and score, then the text, then why."""
    console.print(f"[bold]{escape(query)}[/]")
    for i, h in enumerate(hits, 1):
        text = (h.title + " — " if h.title else "") + h.text.replace("\n", " ")
        text = text[:show_text] + ("…" if len(text) > show_text else "")
        console.print(f"[bold]{i:>2}[/] {escape(h.doc_id)}  [cyan]{h.score:.4f}[/]")
        console.print(f"    {escape(text)}", overflow="fold")
        console.print(f"    [dim]{escape(h.explanation.summary())}[/]", overflow="fold")


def parse_weights(spec: str | None) -> dict[str, float] | None:
    """``sparse=1,dense=2,bm25=0.5`` as a dict (names are checked by the searcher)."""
    if not spec:
        return None
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--weights: {part!r} is not NAME=NUMBER (e.g. sparse=1,dense=2,bm25=0.5)") from None
        if not sep:
            raise ValueError(f"--weights: {part!r} is not NAME=NUMBER (e.g. sparse=1,dense=2,bm25=0.5)")
    return weights


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
    fusion: str | None = typer.Option(
        None, help="rrf, weighted (min-max), zscore or dbsf (default: the collection's tuned fusion, else rrf)."
    ),
    rrf_k: int | None = typer.Option(None, min=0, help="RRF k (default: the collection's, else 60)."),
    weights: str | None = typer.Option(None, help="Per-retriever fusion weights, e.g. sparse=1,dense=2,bm25=0.5."),
    filter: str | None = typer.Option(None, "--filter", help='JSON, e.g. \'{"lang": "en"}\'.'),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
    device: str | None = typer.Option(None),
) -> None:
    """Search an index; the encoders are the ones the index was built with."""
    from ..search import SearchOptions, check_query
    from ..searchers import open_searcher

    if rerank and not reranker:
        fail("--rerank needs --reranker MODEL (a CrossEncoder hub id or local path); no cross-encoder ships offline")
    try:
        flt = json.loads(filter) if filter else None
    except json.JSONDecodeError as exc:
        fail(f"--filter is not valid JSON: {exc}")
    try:
        check_query(query)  # before loading any model
        options = SearchOptions.of(
            top_k=top_k,
            mode=mode,
            candidates=candidates,
            rerank=rerank,
            rerank_top=rerank_top,
            filter=flt,
            fusion=fusion,
            rrf_k=rrf_k,
            weights=parse_weights(weights),
        )
        # A running service owns an embedded store it serves: open_searcher then answers
        # through it, with its warm models (and reranker).
        with closing(
            open_searcher(
                store,
                use_sparse=mode in ("sparse", "hybrid"),
                use_dense=mode in ("dense", "hybrid"),
                reranker=reranker if rerank else None,
                device=device,
            )
        ) as searcher:
            hits = searcher.search(query, options)
            via = getattr(searcher, "url", None)
    except CLI_ERRORS as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    else:
        print_hits(hits, query)
        console.print(f"[dim]{hits.timing.total * 1000:.1f} ms{f' (answered by {via})' if via else ''}[/]")


def describe_store(store_url: str) -> dict[str, Any]:
    """What ``info`` reports, as data (also its ``--json`` output); a served store's, from its service."""
    from ..connectors import open_store, served_by

    service = served_by(store_url)
    if service is not None:
        from ..client import SearchClient

        with SearchClient(service) as client:
            return {k: v for k, v in client.info().items() if k != "service"}
    from ..connectors.description import describe_open_store

    st = open_store(store_url)
    try:
        return describe_open_store(st)
    finally:
        st.close()


@app.command()
def info(
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s"),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """What an index holds: counts, models, dimensions, metadata fields."""
    try:
        d = describe_store(store)
    except CLI_ERRORS as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(d, ensure_ascii=False, indent=2))
        return
    table = Table(title=escape(d["store"]), show_header=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    sparse, dense, bm25 = d["sparse_model"], d["dense_model"], d["bm25"]
    rows = [
        ("documents", str(d["documents"])),
        ("points (chunks)", str(d["points"])),
        ("sparse model", f"{sparse} (vocab {d['sparse_vocab']})" if sparse else "-"),
        ("dense model", f"{dense} (dim {d['dense_dim']})" if dense else "-"),
        ("bm25", f"{bm25['language']}, avg_len {bm25['avg_len']:.1f}" if bm25 else "-"),
        ("metadata fields", ", ".join(f"{k}:{v}" for k, v in d["metadata_fields"].items()) or "-"),
        (
            "fusion",
            FusionSetting.from_dict(d["fusion"]).describe() + " (tuned)" if d["fusion"] else "rrf k=60 (default)",
        ),
    ]
    if d["disk_bytes"] is not None:
        rows.append(("size on disk", f"{d['disk_bytes'] / 1e6:.1f} MB"))
    for k, v in rows:
        table.add_row(k, escape(v))
    console.print(table)
