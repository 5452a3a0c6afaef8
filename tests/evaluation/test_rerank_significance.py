"""bench's +Rerank rows are tested against the same retrieval without reranking (Holm over the
+Rerank rows), beside the usual comparison with the best single retriever."""

import random

from sparsehybrid.evaluation.bench import _significance
from sparsehybrid.evaluation.reports import rerank_significance_text
from sparsehybrid.evaluation.significance import compare_pairs

QUERIES = [f"q{i}" for i in range(40)]


def _scores(values):
    return {"NDCG@10": dict(zip(QUERIES, values))}


def test_every_rerank_row_is_compared_with_its_own_method():
    rng = random.Random(0)
    sparse = [rng.random() * 0.5 for _ in QUERIES]
    hybrid = [v + 0.05 for v in sparse]
    scores = {
        "Sparse": _scores(sparse),
        "Hybrid": _scores(hybrid),
        "Sparse+Rerank": _scores([v + 0.2 + rng.random() * 0.01 for v in sparse]),  # clearly better
        "Hybrid+Rerank": _scores([v + rng.choice((-0.01, 0.01)) for v in hybrid]),  # noise
    }
    sig = _significance(scores, QUERIES, seed=0)
    rerank = sig["reranking"]
    assert set(rerank) == {"Sparse+Rerank", "Hybrid+Rerank"}
    assert rerank["Sparse+Rerank"]["baseline"] == "Sparse" and rerank["Sparse+Rerank"]["mark"] == "▲"
    assert rerank["Hybrid+Rerank"]["baseline"] == "Hybrid" and rerank["Hybrid+Rerank"]["mark"] == ""
    assert abs(rerank["Sparse+Rerank"]["delta"] - 0.205) < 0.01
    text = rerank_significance_text({"cranfield": sig})
    assert "| cranfield | Sparse+Rerank | Sparse | +0.20" in text


def test_holm_applies_over_the_family():
    per_query = {
        "a": dict.fromkeys(QUERIES, 0.5),
        "b": {q: 0.5 + (0.02 if i % 2 else -0.01) for i, q in enumerate(QUERIES)},
    }
    per_query["c"] = dict(per_query["b"])
    one = compare_pairs(per_query, {"b": "a"}, QUERIES)
    two = compare_pairs(per_query, {"b": "a", "c": "a"}, QUERIES)
    assert two["b"].t_p_holm >= one["b"].t_p_holm
    assert two["b"].t_p == one["b"].t_p
