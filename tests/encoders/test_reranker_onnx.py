"""The reranker's ONNX Runtime path: the same scores as CrossEncoder.predict (within 1e-4) in
input order, pairs cut at the model's limit, and torch kept when the export disagrees."""

import numpy as np
import pytest

from sparsehybrid.encoders import reranker as reranker_module
from sparsehybrid.encoders.reranker import SCORE_TOLERANCE, Reranker
from tests.support import tiny_cross_encoder_dir


@pytest.fixture
def tiny_ce(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPARSEHYBRID_ONNX", raising=False)
    return tiny_cross_encoder_dir(tmp_path / "ce")


PASSAGES = [
    "short",
    "the boundary layer separates near the trailing edge " * 40,  # far past the 128-token limit
    "flutter of swept wings at transonic speed",
    "",
    "heat transfer to a blunt body in hypersonic flow, measured at the stagnation point",
] * 3


def test_onnx_scores_match_predict_within_tolerance(tiny_ce):
    reranker = Reranker(tiny_ce, device="cpu", batch_size=4)
    assert reranker.onnx is not None, "the export should be used for a plain BERT cross-encoder"
    assert reranker.max_length == 128
    got = np.array(reranker.score("wing flutter measurements", PASSAGES))
    expected = reranker.model.predict([("wing flutter measurements", p) for p in PASSAGES], show_progress_bar=False)
    assert np.max(np.abs(got - expected)) <= SCORE_TOLERANCE
    # Input order is kept although batches are sorted by length.
    assert got[0] == pytest.approx(got[5], abs=1e-6) and got[1] == pytest.approx(got[11], abs=1e-6)
    assert got[0] != pytest.approx(got[1], abs=1e-6)
    assert "onnxruntime" in repr(reranker)


def test_switch_off_keeps_torch(tiny_ce, monkeypatch):
    monkeypatch.setenv("SPARSEHYBRID_ONNX", "0")
    reranker = Reranker(tiny_ce, device="cpu")
    assert reranker.onnx is None and "torch" in repr(reranker)
    assert len(reranker.score("q", ["a", "b"])) == 2


def test_disagreeing_export_is_dropped(tiny_ce, monkeypatch):
    real = reranker_module.OnnxGraph.run

    def off_by_a_little(self, features):
        return real(self, features) + 1e-3

    monkeypatch.setattr(reranker_module.OnnxGraph, "run", off_by_a_little)
    reranker = Reranker(tiny_ce, device="cpu")
    assert reranker.onnx is None
    scores = reranker.score("q", PASSAGES[:3])
    expected = reranker.model.predict([("q", p) for p in PASSAGES[:3]], show_progress_bar=False)
    assert np.allclose(scores, expected, atol=1e-6)
