"""`bench`: the retrieve-then-rerank benchmark on BEIR folders."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .app import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, app, console, fail, model_or_none


@app.command()
def bench(
    datasets: list[Path] = typer.Argument(
        ..., help="One or more BEIR folders (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        "-s",
        help="Store URL; '{dataset}' is replaced by the folder name (default: qdrant-edge://<out>/index-<dataset>-<hash>).",
    ),
    sparse_model: str = typer.Option(DEFAULT_SPARSE_MODEL, help="SparseEncoder id or path ('none' to skip)."),
    dense_model: str = typer.Option(DEFAULT_DENSE_MODEL, help="SentenceTransformer id or path ('none' to skip)."),
    reranker: str | None = typer.Option(
        None,
        help="CrossEncoder id or path (e.g. a `train-reranker` folder): adds a +Rerank row per method, "
        "tested against the same method without reranking.",
    ),
    rerank_top: int | None = typer.Option(
        None, min=1, help="Candidates reranked per query (default: all --candidates)."
    ),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to evaluate."),
    out: Path = typer.Option(
        Path("results"), "--out", "-o", help="Folder for the table, CSV, JSON, run files and charts."
    ),
    candidates: int = typer.Option(100, min=10, help="Results per query (and candidates per retriever / reranked)."),
    rrf_k: int = typer.Option(60, min=0),
    parity: bool = typer.Option(
        False,
        "--parity",
        help="Also compare Sparse/Dense NDCG@10 with sentence-transformers' evaluators (documents are truncated, not chunked, as they do).",
    ),
    max_queries: int | None = typer.Option(None, min=1, help="Evaluate only the first N judged queries per dataset."),
    batch_size: int = typer.Option(32, min=1),
    max_length: int | None = typer.Option(None, help="Tokens per document/chunk (default: the models' max length)."),
    bm25: bool = typer.Option(True, help="Also benchmark the store's native BM25."),
    device: str | None = typer.Option(None),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="Also tune fusion with k-fold cross-validation (its own row), try judgement-free rules, "
        "and record the chosen setting in each dataset's collection.",
    ),
    folds: int = typer.Option(5, min=2, help="Cross-validation folds for --tune."),
    seed: int = typer.Option(0, help="Seed of the fold split and the randomisation test."),
) -> None:
    """Retrieve-then-rerank benchmark on BEIR folders (a Prefect flow): NDCG@10, MRR@10, MAP@100, Recall@100, latency."""
    from ..connectors import StoreError
    from ..evaluation.beir import BeirFormatError
    from ..evaluation.bench import BenchConfig
    from ..evaluation.bench import bench as run_bench_flow

    for d in datasets:
        if not (d / "corpus.jsonl").exists():
            fail(f"{d} is not a BEIR folder (no corpus.jsonl)")
    t0 = time.perf_counter()
    try:
        cfg = BenchConfig(
            datasets=[str(d) for d in datasets],
            out=str(out),
            store=store,
            sparse_model=model_or_none(sparse_model),
            dense_model=model_or_none(dense_model),
            reranker=reranker,
            rerank_top=rerank_top,
            split=split,
            candidates=candidates,
            rrf_k=rrf_k,
            parity=parity,
            max_queries=max_queries,
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            bm25=bm25,
            tune=tune,
            folds=folds,
            seed=seed,
        )
        report = run_bench_flow(cfg)
    except (StoreError, BeirFormatError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo((out / "results.md").read_text(encoding="utf-8"))
    skipped = {
        n: d["queries_skipped_unjudged"] + d["queries_skipped_no_relevant"] for n, d in report["datasets"].items()
    }
    if any(skipped.values()):
        console.print("queries skipped (no relevant judgement): " + ", ".join(f"{n} {k}" for n, k in skipped.items()))
    console.print(
        f"[bold green]bench done[/] in {time.perf_counter() - t0:.0f} s · results in {out}/ (results.md, results.csv, results.json, runs/, ndcg10.png, quality_latency.png)"
    )
    if report.get("parity_ok") is False:
        fail("parity check failed: see the parity table above")
