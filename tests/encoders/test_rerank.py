"""Second-stage reranking plumbing, with a tiny random-weight cross-encoder built here.

Random weights say nothing about quality; the test checks that the reranker's scores, and only
they, order the reranked head, and that the tail keeps the fused order.
"""

import shutil

import pytest

from sparsehybrid import Document, HybridSearcher, Indexer, Reranker, open_store
from sparsehybrid.encoders.models import resolve_model


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-ce")
    splade_dir, _ = resolve_model("splade-tiny")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{splade_dir}/{name}", path / name)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return str(path)


def test_rerank_orders_the_head_by_cross_encoder_scores(tiny_cross_encoder, tf_encoder, tmp_path):
    docs = [Document(f"d{i}", f"notes on wing flutter test number {i} at transonic speed") for i in range(12)]
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    Indexer(store, tf_encoder, None).index(docs)  # weight-free first stage: plumbing only
    reranker = Reranker(tiny_cross_encoder)
    searcher = HybridSearcher(store, tf_encoder, None, reranker)
    plain = searcher.search("wing flutter", top_k=12, mode="hybrid")
    reranked = searcher.search("wing flutter", top_k=12, mode="hybrid", rerank=True, rerank_top=5)

    head = reranked[:5]
    assert {h.doc_id for h in head} == {h.doc_id for h in plain[:5]}
    expected = reranker.score("wing flutter", [h.text for h in head])
    assert sorted(expected, reverse=True) == pytest.approx([h.score for h in head], abs=1e-5)
    assert all(h.explanation.rerank_score == h.score for h in head)
    assert [h.doc_id for h in reranked[5:]] == [h.doc_id for h in plain[5:]]
    assert all(h.explanation.rerank_score is None for h in reranked[5:])
    assert searcher.last_timing.rerank > 0
    store.close()
