"""`quickstart`: index the standard library's docstrings offline, then search them."""

from __future__ import annotations

import time

import typer

from .app import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, app, console
from .indexing import index_with_progress, print_summary
from .searching import print_hits


@app.command()
def quickstart(
    store: str = typer.Option("qdrant-edge://./.sparsehybrid/quickstart", "--store", "-s"),
    limit: int = typer.Option(1500, min=10, help="How many standard-library docstrings to index."),
    dense: bool = typer.Option(True, help="Also index dense (MiniLM) vectors."),
    device: str | None = typer.Option(None),
) -> None:
    """Index the standard library's docstrings with the offline default models, then search them."""
    from ..quickstart import EXAMPLE_QUERIES, stdlib_documents
    from ..search import searcher_for_store

    t0 = time.perf_counter()
    with console.status("collecting standard-library docstrings"):
        docs = stdlib_documents(limit)
    console.print(
        f"corpus: {len(docs)} docstrings of the Python {'.'.join(map(str, __import__('sys').version_info[:2]))} standard library"
    )
    st, stats = index_with_progress(
        docs,
        store,
        sparse_model=DEFAULT_SPARSE_MODEL,
        dense_model=DEFAULT_DENSE_MODEL if dense else None,
        batch_size=64,
        max_length=256,
        device=device,
        total=len(docs),
        description="indexing docstrings",
    )
    print_summary(stats.summary(st.url))
    searcher = searcher_for_store(st, device=device)
    latencies = []
    for q in EXAMPLE_QUERIES:
        hits = searcher.search(q, top_k=3, mode="hybrid")
        latencies.append(hits.timing.total)
        print_hits(hits, q, show_text=120)
    q = "read and write compressed archives"
    hits = searcher.search(q, top_k=3, mode="hybrid", filter={"kind": "class"})
    print_hits(hits, q + '  [filter {"kind": "class"}]', show_text=120)
    latencies.sort()
    size = (st.disk_size() or 0) / 1e6
    console.print(
        f"[bold green]quickstart done[/] in {time.perf_counter() - t0:.1f} s · index {size:.1f} MB at {st.url} · "
        f"p50 hybrid search {latencies[len(latencies) // 2] * 1000:.1f} ms"
    )
    console.print(f'try: sparsehybrid search "your question" --store {st.url}')
    st.close()
