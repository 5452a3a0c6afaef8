"""The fast dense path (issue 14) reproduces sentence-transformers' ``encode_document`` and
``encode_query`` (cosine within 1e-4) on the bundled all-MiniLM-L6-v2 and real texts.

Speed is not tested here (see ``benchmarks/encode.py --encoder dense``).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from sparsehybrid.encoders.dense_fast import MIN_COSINE, FastDenseEncoder

pytestmark = pytest.mark.slow


def texts_of(cranfield, n: int) -> list[str]:
    rows = [json.loads(line) for line in (cranfield / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:n]]
    return [f"{(r.get('title') or '').strip()} {r['text']}".strip() for r in rows]


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float((ours * theirs).sum(axis=1).min()) >= MIN_COSINE


def test_documents_and_queries_match_sentence_transformers(minilm, cranfield):
    assert minilm._fast is not None
    st = minilm.model
    docs = [*texts_of(cranfield, 80), "", "wing"]
    expected = st.encode_document(docs, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    assert_close(minilm.encode_document(docs), expected)
    queries = [json.loads(line)["text"] for line in (cranfield / "queries.jsonl").read_text().splitlines()[:20]]
    expected = st.encode_query(queries, normalize_embeddings=True, convert_to_numpy=True)
    assert_close(np.concatenate([minilm.encode_query([q]) for q in queries]), expected)
    assert_close(minilm.encode_query(queries), expected)


def test_single_threaded_workers_and_truncation_match(minilm, cranfield):
    import torch

    long_text = " ".join(texts_of(cranfield, 10))  # far beyond 256 tokens: truncated as ST truncates
    docs = [long_text, *texts_of(cranfield, 12)]
    fast = FastDenseEncoder(minilm.model, minilm.model[0], batch_size=3)
    expected = minilm.model.encode_document(docs, normalize_embeddings=True, convert_to_numpy=True)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # two worker threads, whatever this machine has
        assert_close(fast.encode(docs, minilm.max_length), expected)
    finally:
        torch.set_num_threads(previous)
    assert fast.encode([], minilm.max_length).shape == (0, minilm.dim)


def test_cls_pooling_is_not_covered(minilm, caplog):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    cls_model = SentenceTransformer(modules=[minilm.model[0], Pooling(minilm.dim, pooling_mode="cls")], device="cpu")
    with caplog.at_level(logging.INFO, logger="sparsehybrid.encoders.dense_fast"):
        assert FastDenseEncoder.from_sentence_transformer(cls_model) is None
    assert "not mean Pooling" in caplog.text
