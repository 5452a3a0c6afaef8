"""Train a cross-encoder reranker from BEIR-layout judgements (sentence-transformers' trainer).

Why here: no cross-encoder weights ship offline, so the rerank stage can only be real if users
(and our benchmark) train one on judgements they have. The recipe is the one the reference
BERT-tiny MS MARCO cross-encoder was trained with: ``CrossEncoderTrainer`` and
``BinaryCrossEntropyLoss`` over (query, passage, 0/1) pairs whose negatives are the collection's
own retrievers' mistakes (hard) plus random documents; a listwise loss (``ListNetLoss`` or
``LambdaLoss`` over each query's positives and negatives) is there to compare.

Evaluation queries are never trained on: within a collection the queries are split by a seeded
hash of their id (:func:`split_queries`, or k folds with :func:`query_folds`); whole collections
may be held out (``held_out``) and then give evaluation queries only. The split is written to
``DIR/training.json`` so anyone can check it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .beir import BeirDataset, load_beir
from .metrics import Run, evaluate

logger = logging.getLogger(__name__)

#: Losses by the name the CLI takes; "bce" is the reference card's.
LOSSES = ("bce", "listnet", "lambda")
#: Base weights that ship offline: BERT-tiny inside SPLADE-tiny (fast) and MiniLM-L6.
BASES = ("splade-tiny", "all-MiniLM-L6-v2")


@dataclass
class TrainingConfig:
    """Everything that decides the trained model (recorded in the model card)."""

    datasets: list[str]
    out: str
    base: str = "splade-tiny"
    loss: str = "bce"
    held_out: list[str] = field(default_factory=list)
    eval_fraction: float = 0.2
    fold: int | None = None
    folds: int = 5
    max_steps: int = 400
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    hard_negatives: int = 4
    random_negatives: int = 2
    max_positives: int = 4
    mine_depth: int = 30
    max_length: int = 256
    seed: int = 0
    store: str | None = None
    sparse_model: str | None = "splade-tiny"
    dense_model: str | None = None
    checkpoint_steps: int = 100
    resume: bool = False
    rerank_depth: int = 20
    max_queries: int | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction: {self.eval_fraction} must be in [0, 1)")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold: {self.fold} must be in [0, {self.folds})")
        names = {Path(d).name for d in self.datasets}
        unknown = [h for h in self.held_out if h not in names]
        if unknown:
            raise ValueError(f"held_out: {', '.join(unknown)} is not among the datasets ({', '.join(sorted(names))})")


# -- splits --------------------------------------------------------------------------------------
def _bucket(qid: str, seed: int) -> float:
    """A stable number in [0, 1) for a query id: the same split whatever the file order."""
    digest = hashlib.blake2b(f"{seed}|{qid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_queries(qids: Sequence[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, eval) query ids: a seeded hash of each id decides, so adding queries never moves
    an evaluation query into training."""
    train = [q for q in qids if _bucket(q, seed) >= eval_fraction]
    held = [q for q in qids if _bucket(q, seed) < eval_fraction]
    return train, held


def query_folds(qids: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    """``folds`` disjoint query sets covering ``qids`` (seeded shuffle, round robin)."""
    if folds < 2:
        raise ValueError("folds must be at least 2")
    order = sorted(qids, key=lambda q: _bucket(q, seed))
    return [order[i::folds] for i in range(folds)]


def plan_splits(cfg: TrainingConfig, datasets: Sequence[BeirDataset]) -> dict[str, dict[str, list[str]]]:
    """Per collection: the query ids trained on and those kept for evaluation (never both)."""
    plan: dict[str, dict[str, list[str]]] = {}
    for ds in datasets:
        qids = list(ds.queries)
        if ds.name in cfg.held_out:
            train, held = [], qids
        elif cfg.fold is not None:
            held = query_folds(qids, cfg.folds, cfg.seed)[cfg.fold]
            chosen = set(held)
            train = [q for q in qids if q not in chosen]
        else:
            train, held = split_queries(qids, cfg.eval_fraction, cfg.seed)
        plan[ds.name] = {"train": train, "eval": held}
    return plan


# -- mining --------------------------------------------------------------------------------------
@dataclass
class Candidates:
    """One collection's first-stage results for the queries that need them (train and eval)."""

    texts: dict[str, str]
    runs: Run


def mine_candidates(cfg: TrainingConfig, ds: BeirDataset, qids: Sequence[str], workdir: Path) -> Candidates:
    """The collection's hybrid retrievers' top ``mine_depth`` documents per query (BM25 alone when
    no encoder is given), through a store (``cfg.store`` with ``{dataset}`` filled in, indexed if
    needed, else a temporary one)."""
    from ..connectors import open_store
    from ..encoders.dense import DenseEncoder
    from ..encoders.sparse import SparseEncoder
    from ..ingestion.indexing import Indexer
    from ..search import HybridSearcher
    from ..types import SearchMode

    sparse = SparseEncoder(cfg.sparse_model) if cfg.sparse_model else None
    dense = DenseEncoder(cfg.dense_model) if cfg.dense_model else None
    url = (
        cfg.store.replace("{dataset}", ds.name) if cfg.store else f"qdrant-edge://{workdir.resolve()}/mining-{ds.name}"
    )
    store = open_store(url)
    try:
        Indexer(store, sparse, dense, bm25=True).index(ds.corpus, sync=True)
        bm25 = "bm25" in store.capabilities and bool(store.schema and store.schema.bm25)
        if sparse is None and dense is None and not bm25:
            raise ValueError(f"{url}: no retriever to mine with (no encoder given and the store has no BM25)")
        searcher = HybridSearcher(store, sparse, dense, None, bm25=bm25, fusion="rrf")
        # Without encoders the store's BM25 alone mines.
        mode: SearchMode = "hybrid" if sparse is not None or dense is not None else "bm25"
        runs: Run = {}
        for qid in qids:
            hits = searcher.search(
                ds.queries[qid], top_k=cfg.mine_depth, mode=mode, candidates=max(cfg.mine_depth, 50), explain=False
            )
            runs[qid] = [(h.doc_id, float(h.score)) for h in hits]
    finally:
        store.close()
    return Candidates({d.id: d.full_text for d in ds.corpus}, runs)


def training_examples(
    cfg: TrainingConfig, ds: BeirDataset, qids: Sequence[str], candidates: Candidates
) -> list[tuple[str, list[str], list[float]]]:
    """Per training query: (query, passages, gains) with its judged positives, its hard negatives
    (retrieved, not judged relevant) and random negatives; deterministic for a seed."""
    rng = random.Random(f"{cfg.seed}|{ds.name}")
    doc_ids = sorted(candidates.texts)
    examples = []
    for qid in qids:
        judged = ds.qrels[qid]
        positives = sorted((d for d, g in judged.items() if g > 0 and d in candidates.texts), key=lambda d: -judged[d])
        positives = positives[: cfg.max_positives]
        if not positives:
            continue
        relevant = {d for d, g in judged.items() if g > 0}
        hard = [d for d, _ in candidates.runs.get(qid, []) if d not in relevant][: cfg.hard_negatives]
        taken = set(hard)
        randoms: list[str] = []
        for _ in range(cfg.random_negatives * 20):
            if len(randoms) >= cfg.random_negatives:
                break
            d = rng.choice(doc_ids)
            if d not in relevant and d not in taken:
                randoms.append(d)
                taken.add(d)
        ids = positives + hard + randoms
        gains = [float(judged[d]) for d in positives] + [0.0] * (len(hard) + len(randoms))
        examples.append((ds.queries[qid], [candidates.texts[d] for d in ids], gains))
    return examples


def to_dataset(examples, loss: str, seed: int):
    """A Hugging Face dataset in the loss's layout: (query, passage, label) pairs for BCE, one
    row of (query, docs, labels) per query for the listwise losses."""
    from datasets import Dataset

    if loss == "bce":
        rows = [(q, p, 1.0 if g > 0 else 0.0) for q, ps, gs in examples for p, g in zip(ps, gs)]
        random.Random(seed).shuffle(rows)
        return Dataset.from_dict(
            {"query": [r[0] for r in rows], "passage": [r[1] for r in rows], "label": [r[2] for r in rows]}
        )
    rows = list(examples)
    random.Random(seed).shuffle(rows)
    return Dataset.from_dict(
        {"query": [r[0] for r in rows], "docs": [r[1] for r in rows], "labels": [r[2] for r in rows]}
    )


def make_loss(model, name: str):
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "listnet":
        return losses.ListNetLoss(model)
    return losses.LambdaLoss(model)


# -- evaluation ----------------------------------------------------------------------------------
def reorder_head(ranked: Sequence[tuple[str, float]], scores: Sequence[float]) -> list[tuple[str, float]]:
    """``ranked`` with its first ``len(scores)`` documents reordered by ``scores`` and kept above
    the rest, as :class:`~sparsehybrid.search.HybridSearcher` reranks. Scores become ranks, so
    the head stays on top whatever the score scales."""
    head, tail = ranked[: len(scores)], ranked[len(scores) :]
    order = sorted(range(len(head)), key=lambda i: -scores[i])
    ids = [head[i][0] for i in order] + [d for d, _ in tail]
    return [(d, float(len(ids) - r)) for r, d in enumerate(ids)]


def rerank_run(score: Callable[[str, list[str]], Sequence[float]], queries, candidates: Candidates, depth: int) -> Run:
    """The first-stage run with its top ``depth`` reordered by ``score``."""
    run: Run = {}
    for qid, text in queries.items():
        head = candidates.runs[qid][:depth]
        run[qid] = reorder_head(candidates.runs[qid], list(score(text, [candidates.texts[d] for d, _ in head])))
    return run


def evaluate_reranker(model, ds: BeirDataset, qids: Sequence[str], candidates: Candidates, depth: int) -> dict:
    """NDCG@10 (and friends) of the first stage and of its top ``depth`` reranked, on ``qids``."""
    queries = {q: ds.queries[q] for q in qids}
    qrels = {q: ds.qrels[q] for q in qids}
    first = {q: candidates.runs[q] for q in qids}

    def score(query: str, passages: list[str]) -> Sequence[float]:
        return model.predict([(query, p) for p in passages], show_progress_bar=False) if passages else []

    reranked = rerank_run(score, queries, candidates, depth)
    return {
        "queries": len(qids),
        "first_stage": evaluate(qrels, first, queries),
        "reranked": evaluate(qrels, reranked, queries),
    }


# -- training ------------------------------------------------------------------------------------
def _latest_checkpoint(folder: Path) -> str | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(found[-1]) if found else None


@dataclass
class Prepared:
    """The loaded collections and their first-stage candidates: mined once, reusable by several
    trainings over the same collections (a benchmark's folds)."""

    datasets: list[BeirDataset]
    candidates: dict[str, Candidates]


def prepare(cfg: TrainingConfig, log=logger) -> Prepared:
    """Load ``cfg.datasets`` and mine candidates for every evaluable query (train and eval)."""
    datasets = [load_beir(d, split=cfg.split, max_queries=cfg.max_queries) for d in cfg.datasets]
    candidates: dict[str, Candidates] = {}
    with tempfile.TemporaryDirectory(prefix="sparsehybrid-mining-") as tmp:
        for ds in datasets:
            t = time.perf_counter()
            candidates[ds.name] = mine_candidates(cfg, ds, list(ds.queries), Path(tmp))
            log.info("%s: candidates mined for %d queries in %.0f s", ds.name, len(ds.queries), time.perf_counter() - t)
    return Prepared(datasets, candidates)


def train_reranker(cfg: TrainingConfig, prepared: Prepared | None = None, log=logger) -> dict:
    """Mine (unless ``prepared``), train, evaluate and save; returns what ``DIR/training.json`` holds."""
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from transformers import set_seed

    from ..encoders.models import resolve_model

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if prepared is None:
        prepared = prepare(cfg, log=log)
    datasets = prepared.datasets
    candidates = prepared.candidates
    plan = plan_splits(cfg, datasets)
    examples: list[tuple[str, list[str], list[float]]] = []
    for ds in datasets:
        mine = training_examples(cfg, ds, plan[ds.name]["train"], candidates[ds.name])
        examples += mine
        log.info(
            "%s: %d training queries (%d with positives), %d evaluation queries",
            ds.name,
            len(plan[ds.name]["train"]),
            len(mine),
            len(plan[ds.name]["eval"]),
        )
    if not examples:
        raise ValueError("no training query with a relevant judgement: nothing to train on")
    train_set = to_dataset(examples, cfg.loss, cfg.seed)
    set_seed(cfg.seed)
    load_from, base_name = resolve_model(cfg.base)
    model = CrossEncoder(load_from, num_labels=1, max_length=cfg.max_length, device="cpu")
    checkpoints = out / "checkpoints"
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size if cfg.loss == "bce" else max(1, cfg.batch_size // 8),
        learning_rate=cfg.learning_rate,
        warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
        save_steps=cfg.checkpoint_steps,
        save_total_limit=2,
        logging_steps=max(1, min(50, cfg.max_steps // 10)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        use_cpu=True,
        disable_tqdm=False,
        dataloader_drop_last=False,
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_set, loss=make_loss(model, cfg.loss))
    resume_from = _latest_checkpoint(checkpoints) if cfg.resume else None
    if resume_from:
        log.info("resuming from %s", resume_from)
    t = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - t
    model.save_pretrained(str(out))
    metrics = {
        ds.name: evaluate_reranker(model, ds, plan[ds.name]["eval"], candidates[ds.name], cfg.rerank_depth)
        for ds in datasets
        if plan[ds.name]["eval"]
    }
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "base": {"name": base_name, "loaded_from": load_from},
        "data": {
            ds.name: {
                "path": str(ds.path),
                "train_queries": len(plan[ds.name]["train"]),
                "eval_queries": len(plan[ds.name]["eval"]),
                "held_out": ds.name in cfg.held_out,
            }
            for ds in datasets
        },
        "splits": plan,
        "training": {
            "examples": len(train_set),
            "steps": int(result.global_step),
            "loss": float(result.training_loss),
            "resumed_from": resume_from,
            "seconds": round(train_seconds, 1),
        },
        "metrics": metrics,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "README.md").write_text(model_card(report), encoding="utf-8")
    return report


def model_card(report: dict) -> str:
    """The model card: where the weights come from, what they saw, and how they score."""
    cfg = report["config"]
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, sparsehybrid]",
        "---",
        "",
        "# Cross-encoder reranker trained by `sparsehybrid train-reranker`",
        "",
        f"- Base weights: `{report['base']['name']}` (loaded from `{report['base']['loaded_from']}`)",
        f"- Loss: `{cfg['loss']}`; {report['training']['steps']} steps, batch {cfg['batch_size']}, "
        f"learning rate {cfg['learning_rate']}, max length {cfg['max_length']} tokens, seed {cfg['seed']}",
        f"- Negatives per query: {cfg['hard_negatives']} hard (hybrid top {cfg['mine_depth']}, not judged "
        f"relevant) + {cfg['random_negatives']} random; up to {cfg['max_positives']} judged positives",
        f"- Training examples: {report['training']['examples']}, final training loss "
        f"{report['training']['loss']:.4f}, {report['training']['seconds']} s",
        "",
        "## Data",
        "",
        "| collection | train queries | eval queries | held out |",
        "|---|---:|---:|---|",
    ]
    for name, d in report["data"].items():
        lines.append(f"| {name} | {d['train_queries']} | {d['eval_queries']} | {'yes' if d['held_out'] else 'no'} |")
    lines += [
        "",
        "Evaluation queries are never trained on (their ids are in `training.json`).",
        "",
        f"## Metrics (evaluation queries, top {cfg['rerank_depth']} reranked)",
        "",
        "| collection | queries | first stage NDCG@10 | reranked NDCG@10 |",
        "|---|---:|---:|---:|",
    ]
    for name, m in report["metrics"].items():
        lines.append(
            f"| {name} | {m['queries']} | {m['first_stage']['NDCG@10']:.4f} | {m['reranked']['NDCG@10']:.4f} |"
        )
    lines += ["", "Use it: `sparsehybrid search ... --reranker DIR` or `Reranker(DIR)`.", ""]
    return "\n".join(lines)
