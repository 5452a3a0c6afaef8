"""The ONNX Runtime path of the fast encoders (issue 14): the export of whatever model is loaded
reproduces sentence-transformers, is cached and reused, survives a damaged cache file, and can be
switched off. Tiny random weights (plumbing only); speed is in ``benchmarks/query_encode.py``."""

from __future__ import annotations

import numpy as np
import pytest

from sparsehybrid.encoders import onnx_export
from sparsehybrid.encoders.dense import DenseEncoder
from sparsehybrid.encoders.sparse import SparseEncoder

QUERIES = ["wing flutter at supersonic speed", "heat", "boundary layer transition on a flat plate in a shock tunnel"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_CACHE", str(tmp_path))
    monkeypatch.delenv("SPARSEHYBRID_ONNX", raising=False)
    return tmp_path / "onnx"


@pytest.fixture(scope="module")
def tiny_dense_dir(tmp_path_factory, tiny_splade_dir) -> str:
    """A mean-pooling, normalising sentence-transformers model over the tiny random BERT."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    body = Transformer(tiny_splade_dir, max_seq_length=64)
    model = SentenceTransformer(modules=[body, Pooling(body.get_embedding_dimension(), "mean"), Normalize()])
    path = tmp_path_factory.mktemp("tiny-dense")
    model.save(str(path))
    return str(path)


def sparse_reference(encoder: SparseEncoder, texts: list[str]) -> np.ndarray:
    return encoder.model.encode_query(texts, convert_to_tensor=True, convert_to_sparse_tensor=False).float().numpy()


def as_dense(vectors, width: int) -> np.ndarray:
    out = np.zeros((len(vectors), width), dtype=np.float32)
    for row, vector in enumerate(vectors):
        out[row, vector.indices] = vector.values
    return out


def test_sparse_queries_run_through_onnx_and_match_sentence_transformers(cache, tiny_splade_dir):
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast is not None and encoder._fast.onnx is not None
    assert encoder._fast.onnx_tasks == {"query"}
    assert len(list(cache.glob("*.onnx"))) == 1
    expected = sparse_reference(encoder, QUERIES)
    ours = as_dense(encoder.encode_query(QUERIES), expected.shape[1])  # one padded batch
    assert np.abs(ours - expected).max() < 1e-4
    one_by_one = as_dense([encoder.encode_query([q])[0] for q in QUERIES], expected.shape[1])
    assert np.abs(one_by_one - expected).max() < 1e-4


def test_dense_queries_run_through_onnx_and_match_sentence_transformers(cache, tiny_dense_dir):
    encoder = DenseEncoder(tiny_dense_dir)
    assert encoder._fast is not None and encoder._fast.onnx is not None
    expected = encoder.model.encode_query(QUERIES, normalize_embeddings=True, convert_to_numpy=True)
    for ours in (encoder.encode_query(QUERIES), np.concatenate([encoder.encode_query([q]) for q in QUERIES])):
        assert ours.dtype == np.float32
        assert float((ours * expected).sum(axis=1).min()) > 1 - 1e-4


def test_the_export_is_cached_and_reused(cache, tiny_splade_dir, monkeypatch):
    SparseEncoder(tiny_splade_dir, max_length=64)
    (path,) = cache.glob("*.onnx")
    written = path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast.onnx is not None and encoder._fast.onnx.path == path
    assert path.stat().st_mtime_ns == written


def test_other_weights_get_their_own_export(cache, tiny_splade_dir, tiny_dense_dir):
    SparseEncoder(tiny_splade_dir, max_length=64)
    DenseEncoder(tiny_dense_dir)
    assert len(list(cache.glob("*.onnx"))) == 2  # same body weights, another graph recipe


def test_a_damaged_cache_file_is_exported_again(cache, tiny_splade_dir):
    SparseEncoder(tiny_splade_dir, max_length=64)
    (path,) = cache.glob("*.onnx")
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as a full disk would leave it
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast.onnx is not None
    expected = sparse_reference(encoder, QUERIES)
    assert np.abs(as_dense(encoder.encode_query(QUERIES), expected.shape[1]) - expected).max() < 1e-4
    assert not list(cache.glob("*.tmp"))


def test_switched_off_or_unexportable_models_keep_the_torch_path(cache, tiny_splade_dir, monkeypatch, caplog):
    monkeypatch.setenv("SPARSEHYBRID_ONNX", "0")
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast.onnx is None and encoder._fast.covers_queries
    assert not cache.exists() or not list(cache.glob("*.onnx"))
    expected = sparse_reference(encoder, QUERIES)
    assert np.abs(as_dense(encoder.encode_query(QUERIES), expected.shape[1]) - expected).max() < 1e-4

    monkeypatch.delenv("SPARSEHYBRID_ONNX")

    def broken_export(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\nsecond line")

    monkeypatch.setattr(onnx_export, "_export", broken_export)
    with caplog.at_level("INFO", logger="sparsehybrid.encoders.onnx_export"):
        encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast.onnx is None
    assert "ONNX Runtime path not used: RuntimeError: Unsupported: ONNX export of operator foo" in caplog.text
    assert np.abs(as_dense(encoder.encode_query(QUERIES), expected.shape[1]) - expected).max() < 1e-4


def test_a_graph_that_disagrees_is_dropped(cache, tiny_splade_dir, monkeypatch):
    real_run = onnx_export.OnnxGraph.run
    monkeypatch.setattr(onnx_export.OnnxGraph, "run", lambda self, features: real_run(self, features) * 1.01)
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    assert encoder._fast.onnx is None and encoder._fast.covers_queries


def test_a_batch_onnx_runtime_fails_on_is_computed_by_torch(cache, tiny_splade_dir, monkeypatch, caplog):
    encoder = SparseEncoder(tiny_splade_dir, max_length=64)
    expected = sparse_reference(encoder, QUERIES)

    def failing(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")

    monkeypatch.setattr(encoder._fast.onnx.session, "run", failing)
    with caplog.at_level("WARNING", logger="sparsehybrid.encoders.onnx_export"):
        ours = as_dense(encoder.encode_query(QUERIES), expected.shape[1])
        encoder.encode_query(QUERIES)
    assert np.abs(ours - expected).max() < 1e-4
    assert caplog.text.count("ONNX Runtime failed on a batch") == 1


def test_an_encoder_for_documents_only_builds_no_query_graph(cache, tiny_splade_dir, tiny_dense_dir):
    """Issue 21: an index job's encoders skip the query graphs (memory), and still encode
    queries as sentence-transformers does if asked."""
    sparse = SparseEncoder(tiny_splade_dir, max_length=64, queries=False)
    dense = DenseEncoder(tiny_dense_dir, queries=False)
    assert sparse._fast is not None and sparse._fast.onnx is None
    assert dense._fast is not None and dense._fast.onnx is None
    assert not list(cache.glob("*.onnx"))
    expected = sparse_reference(sparse, QUERIES)
    assert np.abs(as_dense(sparse.encode_query(QUERIES), expected.shape[1]) - expected).max() < 1e-4
    reference = dense.model.encode_query(QUERIES, normalize_embeddings=True, convert_to_numpy=True)
    assert float((dense.encode_query(QUERIES) * reference).sum(axis=1).min()) > 1 - 1e-4
