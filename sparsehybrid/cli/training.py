"""`train-reranker`: train a cross-encoder reranker from BEIR-layout judgements."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, console, fail, model_or_none


@app.command("train-reranker")
def train_reranker(
    datasets: list[Path] = typer.Argument(..., help="BEIR folders whose judgements train (and evaluate) the model."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the model, its card (README.md) and training.json."),
    base: str = typer.Option(
        "splade-tiny",
        help="Base weights: 'splade-tiny' (the BERT-tiny inside the bundled SPLADE model, fast), "
        "'all-MiniLM-L6-v2' (bundled), or a local path.",
    ),
    loss: str = typer.Option("bce", help="bce (binary cross-entropy, the reference recipe), listnet or lambda."),
    held_out: list[str] = typer.Option(
        [], "--held-out", help="Collection (folder name) used for evaluation only, never trained on; repeatable."
    ),
    eval_fraction: float = typer.Option(0.2, help="Share of each other collection's queries kept for evaluation."),
    fold: int | None = typer.Option(None, min=0, help="Evaluate on this cross-validation fold instead (0-based)."),
    folds: int = typer.Option(5, min=2, help="Number of folds for --fold."),
    max_steps: int = typer.Option(400, min=1, help="Optimiser steps."),
    batch_size: int = typer.Option(32, min=1, help="Pairs per step (listwise losses: queries = batch / 8)."),
    learning_rate: float = typer.Option(1e-4),
    hard_negatives: int = typer.Option(4, min=0, help="Retrieved, unjudged-relevant documents per query."),
    random_negatives: int = typer.Option(2, min=0, help="Random documents per query."),
    mine_depth: int = typer.Option(30, min=1, help="Hybrid results mined per query."),
    max_length: int = typer.Option(256, min=16, help="Tokens per (query, passage) pair."),
    store: str | None = typer.Option(
        None,
        "--store",
        "-s",
        help="Store URL to mine from, '{dataset}' replaced by the folder name (indexed if needed); default: a temporary store.",
    ),
    sparse_model: str = typer.Option(
        "splade-tiny", help="Sparse retriever for mining ('none' to skip; with no encoder BM25 mines alone)."
    ),
    dense_model: str = typer.Option("none", help="Dense retriever for mining ('none' to skip)."),
    checkpoint_steps: int = typer.Option(100, min=1, help="Save a checkpoint every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUT/checkpoints."),
    rerank_depth: int = typer.Option(20, min=1, help="Candidates reranked when the model card's metrics are measured."),
    seed: int = typer.Option(0),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv holds the judgements."),
) -> None:
    """Train a CrossEncoder (sentence-transformers' trainer) on judged queries, with hard negatives
    mined from the collections' own hybrid retrieval; evaluation queries are never trained on."""
    from ..evaluation.beir import BeirFormatError
    from ..evaluation.reranker_training import TrainingConfig
    from ..evaluation.reranker_training import train_reranker as train

    for d in datasets:
        if not (d / "corpus.jsonl").exists():
            fail(f"{d} is not a BEIR folder (no corpus.jsonl)")
    try:
        cfg = TrainingConfig(
            datasets=[str(d) for d in datasets],
            out=str(out),
            base=base,
            loss=loss,
            held_out=list(held_out),
            eval_fraction=eval_fraction,
            fold=fold,
            folds=folds,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            hard_negatives=hard_negatives,
            random_negatives=random_negatives,
            mine_depth=mine_depth,
            max_length=max_length,
            seed=seed,
            store=store,
            sparse_model=model_or_none(sparse_model),
            dense_model=model_or_none(dense_model),
            checkpoint_steps=checkpoint_steps,
            resume=resume,
            rerank_depth=rerank_depth,
            split=split,
        )
        report = train(cfg)
    except (BeirFormatError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    for name, m in report["metrics"].items():
        console.print(
            f"{name}: {m['queries']} evaluation queries, NDCG@10 {m['first_stage']['NDCG@10']:.4f} -> "
            f"{m['reranked']['NDCG@10']:.4f} reranked (top {rerank_depth})"
        )
    console.print(f"[bold green]reranker trained[/] in {report['wall_seconds']:.0f} s · model and card in {out}/")
