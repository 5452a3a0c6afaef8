"""train-reranker's library: query splits that never leak evaluation queries, training a few
steps offline (tiny random weights: plumbing, not quality), resuming from a checkpoint."""

import json
from dataclasses import replace

import pytest

from sparsehybrid.evaluation import reranker_training as rt
from sparsehybrid.evaluation.beir import load_beir
from tests.support import tiny_cross_encoder_dir, write_topic_beir


def test_split_is_stable_disjoint_and_complete():
    qids = [f"q{i}" for i in range(200)]
    train, held = rt.split_queries(qids, 0.2, seed=3)
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(qids)
    assert 20 < len(held) < 60
    # The same query lands on the same side whatever the order or the other queries.
    train2, held2 = rt.split_queries(list(reversed(qids)) + [f"new{i}" for i in range(50)], 0.2, seed=3)
    assert set(held) <= set(held2) and set(train) <= set(train2)
    assert set(rt.split_queries(qids, 0.2, seed=4)[1]) != set(held)


def test_folds_partition_the_queries():
    qids = [f"q{i}" for i in range(23)]
    folds = rt.query_folds(qids, 4, seed=0)
    assert sorted(q for f in folds for q in f) == sorted(qids)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(folds) for b in folds[i + 1 :])


def test_plan_holds_out_whole_collections_and_folds(tmp_path):
    a = load_beir(write_topic_beir(tmp_path / "a", topics=8))
    b = load_beir(write_topic_beir(tmp_path / "b", topics=5))
    cfg = rt.TrainingConfig(
        datasets=[str(a.path), str(b.path)], out=str(tmp_path / "m"), held_out=["b"], fold=1, folds=4
    )
    plan = rt.plan_splits(cfg, [a, b])
    assert plan["b"] == {"train": [], "eval": list(b.queries)}
    assert plan["a"]["eval"] == rt.query_folds(list(a.queries), 4, 0)[1]
    assert set(plan["a"]["train"]) == set(a.queries) - set(plan["a"]["eval"])


def test_config_rejects_unknown_held_out_collection(tmp_path):
    with pytest.raises(ValueError, match="held_out: nope is not among the datasets"):
        rt.TrainingConfig(datasets=[str(tmp_path / "a")], out=str(tmp_path), held_out=["nope"])
    with pytest.raises(ValueError, match="loss: 'hinge'"):
        rt.TrainingConfig(datasets=[str(tmp_path / "a")], out=str(tmp_path), loss="hinge")


def test_examples_pair_judged_positives_with_hard_then_random_negatives(tmp_path):
    ds = load_beir(write_topic_beir(tmp_path / "a"))
    texts = {d.id: d.full_text for d in ds.corpus}
    runs = {"q0": [("t3d1", 3.0), ("t0d1", 2.0), ("t1d0", 1.0), ("t2d2", 0.5)]}
    cfg = rt.TrainingConfig(datasets=[str(ds.path)], out=str(tmp_path), hard_negatives=2, random_negatives=1)
    [(query, passages, gains)] = rt.training_examples(cfg, ds, ["q0"], rt.Candidates(texts, runs))
    assert query == ds.queries["q0"]
    assert passages[:4] == [texts["t0d0"], texts["t0d1"], texts["t0d2"], texts["t0d3"]]
    assert gains[:4] == [2.0, 1.0, 1.0, 1.0]
    # Hard negatives: retrieved, not judged relevant (a judged 0 is a negative), in rank order.
    assert passages[4:6] == [texts["t3d1"], texts["t1d0"]] and gains[4:] == [0.0, 0.0, 0.0]
    assert passages[6] not in {texts[d] for d in ("t0d0", "t0d1", "t0d2", "t0d3", "t3d1", "t1d0")}


def test_reorder_head_keeps_the_tail_below():
    ranked = [("a", 9.0), ("b", 8.0), ("c", 7.0), ("d", 6.0)]
    out = rt.reorder_head(ranked, [0.1, 0.9])
    assert [d for d, _ in out] == ["b", "a", "c", "d"]
    assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPARSEHYBRID_CACHE", str(tmp_path / "cache"))
    base = tiny_cross_encoder_dir(tmp_path / "base")
    data = [write_topic_beir(tmp_path / "alpha", topics=10), write_topic_beir(tmp_path / "beta", topics=4)]
    cfg = rt.TrainingConfig(
        datasets=[str(d) for d in data],
        out=str(tmp_path / "model"),
        base=base,
        held_out=["beta"],
        eval_fraction=0.3,
        max_steps=4,
        batch_size=4,
        checkpoint_steps=2,
        max_length=64,
        sparse_model=None,
        dense_model=None,
        rerank_depth=5,
    )
    return cfg


@pytest.mark.slow
def test_train_few_steps_offline_never_on_eval_queries(tiny_setup, monkeypatch):
    seen: list[str] = []
    real = rt.to_dataset

    def spy(examples, loss, seed):
        seen.extend(q for q, _, _ in examples)
        return real(examples, loss, seed)

    monkeypatch.setattr(rt, "to_dataset", spy)
    report = rt.train_reranker(tiny_setup)
    out = tiny_setup.out
    datasets = {d.name: d for d in (load_beir(p) for p in tiny_setup.datasets)}
    eval_texts = {datasets[n].queries[q] for n, s in report["splits"].items() for q in s["eval"]}
    assert report["splits"]["beta"]["train"] == [] and report["splits"]["alpha"]["eval"]
    assert seen and eval_texts.isdisjoint(seen)
    assert report["training"]["steps"] == 4
    saved = json.loads((tiny_setup_path(out) / "training.json").read_text())
    assert saved["splits"] == report["splits"]
    card = (tiny_setup_path(out) / "README.md").read_text()
    assert "Base weights" in card and "| beta | 0 | 4 | yes |" in card
    assert set(report["metrics"]) == {"alpha", "beta"}
    # The saved model loads as a reranker and scores.
    from sparsehybrid.encoders.reranker import Reranker

    assert len(Reranker(out).score("wing flutter", ["a", "b"])) == 2


@pytest.mark.slow
def test_resume_continues_from_the_latest_checkpoint(tiny_setup):
    first = rt.train_reranker(tiny_setup)
    assert first["training"]["resumed_from"] is None
    checkpoints = sorted(p.name for p in (tiny_setup_path(tiny_setup.out) / "checkpoints").iterdir())
    assert "checkpoint-4" in checkpoints
    again = rt.train_reranker(replace(tiny_setup, max_steps=6, resume=True))
    assert again["training"]["resumed_from"].endswith("checkpoint-4")
    assert again["training"]["steps"] == 6


@pytest.mark.slow
def test_listwise_loss_trains(tiny_setup):
    report = rt.train_reranker(replace(tiny_setup, loss="listnet", max_steps=2))
    assert report["training"]["steps"] == 2 and report["config"]["loss"] == "listnet"


def tiny_setup_path(out: str):
    from pathlib import Path

    return Path(out)
