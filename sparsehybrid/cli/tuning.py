"""`tune`: choose a collection's fusion from judged queries, with cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .app import DEFAULT_STORE, app, console, fail, progress_bar


@app.command()
def tune(
    dataset: Path = typer.Argument(
        ..., help="BEIR folder whose queries.jsonl and qrels/<split>.tsv judge the collection."
    ),
    store: str = typer.Option(
        DEFAULT_STORE, "--store", "-s", help="The collection to tune (indexed from that corpus)."
    ),
    split: str = typer.Option("test", help="Which qrels/<split>.tsv to use."),
    folds: int = typer.Option(5, min=2, help="Cross-validation folds."),
    seed: int = typer.Option(0, help="Seed of the fold split."),
    candidates: int = typer.Option(100, min=10, help="Candidates per retriever, as searches will use."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; do not record the setting."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the full report (every fold) as JSON here."),
    device: str | None = typer.Option(None),
) -> None:
    """Tune fusion (method, weights, RRF k) on judged queries and record it in the collection.

    The reported gain is cross-validated: each fold's setting is chosen on the other folds.
    `search`, the service and the Python API then use the recorded setting unless told otherwise.
    """
    from ..connectors import StoreError, open_store
    from ..evaluation.beir import BeirFormatError, load_beir
    from ..evaluation.tuning import tune as tune_fusion
    from ..searchers import open_searcher

    try:
        ds = load_beir(dataset, split=split)
        st = open_store(store)
    except (StoreError, BeirFormatError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    try:
        schema = st.schema
        if schema is None:
            raise StoreError(f"{st.url} holds no collection yet: run `sparsehybrid index` first")
        # A store a running service owns is searched through that service (open_searcher decides).
        searcher = open_searcher(st, device=device)
        present = {"sparse": schema.sparse_model, "dense": schema.dense_model, "bm25": schema.bm25}
        runs: dict[str, dict] = {r: {} for r, on in present.items() if on}
        with progress_bar() as bar:
            job = bar.add_task("retrieving", total=len(ds.queries) * len(runs), rate="")
            for r in runs:
                for qid, text in ds.queries.items():
                    hits = searcher.search(text, top_k=candidates, mode=r, candidates=candidates, explain=False)
                    runs[r][qid] = [(h.doc_id, h.score) for h in hits]
                    bar.advance(job)
        result = tune_fusion(runs, ds.qrels, list(ds.queries), folds=folds, seed=seed, progress=console.print)
        summary = result.summary()
        cv = summary["cv_ndcg@10"]
        console.print(
            f"{ds.name}: {len(ds.queries)} judged queries, {summary['settings_tried']} settings, {folds}-fold CV"
        )
        console.print(
            f"NDCG@10 (mean over held-out folds): tuned {cv['tuned']:.4f}, plain RRF {cv['plain_rrf']:.4f} "
            f"({cv['tuned'] - cv['plain_rrf']:+.4f}), best single retriever {cv['best_single']:.4f} "
            f"({cv['tuned'] - cv['best_single']:+.4f})"
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"dataset": ds.name, "store": st.url, **summary}, indent=2))
        if dry_run:
            console.print(f"chosen: {result.chosen.describe()} (not recorded: --dry-run)")
        else:
            st.save_fusion(result.chosen.to_dict())
            console.print(f"recorded in {st.url}: {result.chosen.describe()}")
    except (StoreError, ValueError, OSError) as exc:
        fail(str(exc))
    finally:
        st.close()
