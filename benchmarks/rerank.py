"""Retrieve-then-rerank on the shared collections: does a cross-encoder trained here help, and
what does it cost per query?

    nice -n 10 python benchmarks/rerank.py --data ../shared/datasets --work /tmp/rerank

1. Index every collection once (SPLADE-tiny + MiniLM + BM25 in Qdrant Edge under ``--work``) and
   take the hybrid (RRF) top 100 of every judged query: the first stage that is reranked, and
   where hard negatives are mined.
2. Leave-one-collection-out: for each collection, train a BERT-tiny cross-encoder
   (``train-reranker``'s library code) on the judgements of the other collections only, then
   rerank the left-out collection's hybrid top 10/20/50/100 with it (ONNX Runtime path). NDCG@10
   is compared with the un-reranked hybrid query by query (paired t and randomisation tests,
   Holm over the depths: ▲/▼), and the reranker's time per query is measured at each depth.
3. In-collection cross-validation (``--cv-folds``): each fold's queries are reranked by a model
   trained on the collection's other folds; per-query scores are pooled over the folds.
4. Latency: the smallest model's top-20 rerank time, ONNX Runtime and torch side by side on the
   same queries (alternating), with the load average (runs before step 3).

Prints Markdown tables and writes ``rerank.json``, ``rerank.md`` and ``rerank_depth.png`` under
``--work`` after every phase, so a run stopped early keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sparsehybrid.encoders.models import NONE_WORDS
from sparsehybrid.encoders.reranker import Reranker
from sparsehybrid.evaluation import rerank_study as study
from sparsehybrid.evaluation.plots import plot_rerank_depth
from sparsehybrid.evaluation.reranker_training import (
    Prepared,
    TrainingConfig,
    prepare,
    query_folds,
    train_reranker,
)

COLLECTIONS = ("cranfield", "cacm", "npl", "msmarco-5k")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/datasets", help="Folder holding the BEIR collections.")
    p.add_argument("--collections", nargs="+", default=list(COLLECTIONS))
    p.add_argument("--work", default="/tmp/sparsehybrid-rerank", help="Stores, models and results.")
    p.add_argument("--stores", default=None, help="Folder of the collections' stores (default: WORK/stores).")
    p.add_argument(
        "--dense-model", default="all-MiniLM-L6-v2", help="Dense retriever of the first stage ('none': SPLADE + BM25)."
    )
    p.add_argument("--base", default="splade-tiny")
    p.add_argument("--losses", nargs="+", default=["bce"], help="Losses for leave-one-out (bce, listnet, lambda).")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--depths", nargs="+", type=int, default=list(study.DEPTHS))
    p.add_argument("--cv-folds", type=int, default=2, help="0 skips in-collection cross-validation.")
    p.add_argument("--phases", nargs="+", default=["loco", "cv", "latency"], help="loco, cv, latency")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


class Report:
    """Everything measured so far, written after every phase."""

    def __init__(self, work: Path, args: argparse.Namespace):
        self.work, self.data = work, {"args": vars(args), "sections": {}}
        self.markdown: dict[str, str] = {}

    def add(self, key: str, title: str, rows: list[dict], extra: dict | None = None) -> None:
        self.data["sections"][key] = {"rows": rows, **(extra or {})}
        self.markdown[key] = f"### {title}\n\n{study.markdown(rows)}\n"
        print(self.markdown[key], flush=True)
        self.write()

    def note(self, key: str, title: str, text: str, data: dict) -> None:
        self.data["sections"][key] = data
        self.markdown[key] = f"### {title}\n\n{text}\n"
        print(self.markdown[key], flush=True)
        self.write()

    def write(self) -> None:
        self.data["load_average"] = os.getloadavg()
        (self.work / "rerank.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.work / "rerank.md").write_text("\n".join(self.markdown.values()))


def training_config(args, paths: list[str], work: Path) -> TrainingConfig:
    return TrainingConfig(
        datasets=paths,
        out=str(work / "models" / "base"),
        base=args.base,
        max_steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        mine_depth=max(args.depths),
        store=f"qdrant-edge://{Path(args.stores or work / 'stores').resolve()}/{{dataset}}",
        sparse_model="splade-tiny",
        dense_model=None if args.dense_model.lower() in NONE_WORDS else args.dense_model,
        checkpoint_steps=max(50, args.steps // 2),
        resume=True,
        seed=args.seed,
    )


def leave_one_out(args, base: TrainingConfig, prepared: Prepared, report: Report, work: Path) -> None:
    by_name = {ds.name: ds for ds in prepared.datasets}
    for loss in args.losses:
        rows: list[dict] = []
        trained: dict[str, dict] = {}
        for name in by_name:
            cfg = replace(
                base, out=str(work / "models" / f"loco-{loss}-{name}"), loss=loss, held_out=[name], eval_fraction=0.0
            )
            t = time.perf_counter()
            info = train_reranker(cfg, prepared)
            trained[name] = {
                "dir": cfg.out,
                "train_seconds": info["training"]["seconds"],
                "steps": info["training"]["steps"],
            }
            reranker = Reranker(cfg.out, device="cpu")
            ds = by_name[name]
            runs, latency = study.rerank_at_depths(
                reranker, ds, list(ds.queries), prepared.candidates[name], args.depths
            )
            rows += study.summarise(study.depth_result(name, ds, runs, latency), seed=args.seed)
            trained[name]["backend"] = "onnxruntime" if reranker.onnx is not None else "torch"
            trained[name]["wall_seconds"] = round(time.perf_counter() - t, 1)
            report.add(
                f"loco-{loss}", f"Leave-one-collection-out ({loss}, {args.steps} steps)", rows, {"models": trained}
            )
        report.add(
            f"loco-{loss}",
            f"Leave-one-collection-out ({loss}, {args.steps} steps)",
            rows + study.mean_rows(rows, "mean (left-out)"),
            {"models": trained},
        )
        plot_rerank_depth(work / f"rerank_depth_{loss}.png", rows)


def cross_validation(args, base: TrainingConfig, prepared: Prepared, report: Report, work: Path) -> None:
    rows: list[dict] = []
    for ds in prepared.datasets:
        one = Prepared([ds], {ds.name: prepared.candidates[ds.name]})
        merged: dict[str, dict] = {}
        for fold in range(args.cv_folds):
            cfg = replace(
                base,
                datasets=[str(ds.path)],
                out=str(work / "models" / f"cv-{ds.name}-{fold}"),
                fold=fold,
                folds=args.cv_folds,
            )
            train_reranker(cfg, one)
            held = query_folds(list(ds.queries), args.cv_folds, args.seed)[fold]
            runs, _ = study.rerank_at_depths(
                Reranker(cfg.out, device="cpu"), ds, held, prepared.candidates[ds.name], args.depths
            )
            for name, run in runs.items():
                merged.setdefault(name, {}).update(run)
        qids = list(ds.queries)
        ordered = {name: {q: run[q] for q in qids} for name, run in merged.items()}
        rows += study.summarise(study.depth_result(ds.name, ds, ordered, {}), seed=args.seed)
        report.add("cv", f"In-collection {args.cv_folds}-fold cross-validation (bce)", rows)
    report.add("cv", f"In-collection {args.cv_folds}-fold cross-validation (bce)", rows + study.mean_rows(rows, "mean"))


def latency_check(args, prepared: Prepared, report: Report, work: Path, rounds: int = 3) -> None:
    """Top-20 rerank time per query, ONNX Runtime and torch alternating on the same queries."""
    models = sorted((work / "models").glob("loco-*"))
    if not models:
        return
    fast, slow = Reranker(str(models[0]), device="cpu"), Reranker(str(models[0]), device="cpu", onnx=False)
    timings: dict[str, list[float]] = {"onnxruntime": [], "torch": []}
    for ds in prepared.datasets:
        cand = prepared.candidates[ds.name]
        for qid, text in list(ds.queries.items())[:50]:
            passages = [cand.texts[d] for d, _ in cand.runs[qid][:20]]
            for _ in range(rounds):
                for label, r in (("onnxruntime", fast), ("torch", slow)):
                    t = time.perf_counter()
                    r.score(text, passages)
                    timings[label].append((time.perf_counter() - t) * 1000)
    p50 = {k: statistics.median(v) for k, v in timings.items()}
    load = os.getloadavg()
    text = (
        f"Model `{models[0].name}` (max length {fast.max_length} tokens, backend {fast!r}); "
        f"{len(timings['torch'])} top-20 reranks each, alternating.\n\n"
        f"| backend | p50 ms | p95 ms |\n|---|---:|---:|\n"
        + "".join(f"| {k} | {p50[k]:.1f} | {sorted(v)[int(0.95 * (len(v) - 1))]:.1f} |\n" for k, v in timings.items())
        + f"\nONNX Runtime / torch time ratio: {p50['onnxruntime'] / p50['torch']:.2f}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    report.note("latency", "Top-20 rerank latency (smallest model)", text, {"p50_ms": p50, "load_average": load})


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = Report(work, args)
    paths = [str(Path(args.data) / c) for c in args.collections]
    base = training_config(args, paths, work)
    t = time.perf_counter()
    prepared = prepare(base)
    report.data["first_stage"] = {
        "retrievers": " + ".join(filter(None, [base.sparse_model, base.dense_model, "BM25"])) + ", RRF",
        "depth": max(args.depths),
        "seconds": round(time.perf_counter() - t, 1),
        "config": asdict(base),
    }
    if "loco" in args.phases:
        leave_one_out(args, base, prepared, report, work)
    if "latency" in args.phases:
        latency_check(args, prepared, report, work)
    if "cv" in args.phases and args.cv_folds >= 2:
        cross_validation(args, base, prepared, report, work)
    print(f"results in {work}/ (rerank.md, rerank.json, rerank_depth_*.png)")


if __name__ == "__main__":
    main()
