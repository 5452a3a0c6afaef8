"""benchmarks/peers.py's ONNX export folder, on a tiny random BERT (no timing here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peers

TEXTS = ["what is the boundary layer", "a longer text about supersonic flow over a flat plate, and heat"]


def _torch_output(model_dir: str, kind: str, texts: list[str]) -> tuple[np.ndarray, dict]:
    import torch
    import transformers
    from transformers import AutoTokenizer

    auto_class, output_name = peers.EXPORTS[kind]
    model = getattr(transformers, auto_class).from_pretrained(model_dir).eval()
    batch = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = getattr(model(**batch), output_name).numpy()
    return out, {k: v.numpy() for k, v in batch.items()}


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_export_folder_matches_torch_and_is_reused(tiny_splade_dir: str, tmp_path: Path, kind: str) -> None:
    import onnxruntime as ort

    folder = peers.write_fastembed_folder(tiny_splade_dir, tmp_path / "fe", kind, max_length=48)
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        assert (folder / name).exists(), name
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 48 and "max_length" not in config
    assert json.loads((folder / "special_tokens_map.json").read_text())["pad_token"] == "[PAD]"

    expected, batch = _torch_output(tiny_splade_dir, kind, TEXTS)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.astype(np.int64) for k, v in batch.items()})
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4)

    written = (folder / "model.onnx").stat().st_mtime_ns
    assert peers.write_fastembed_folder(tiny_splade_dir, tmp_path / "fe", kind, max_length=48) == folder
    assert (folder / "model.onnx").stat().st_mtime_ns == written  # same files, kind and length: reused


def test_fastembed_splade_agrees_with_sentence_transformers(tiny_splade_dir: str, tmp_path: Path) -> None:
    pytest.importorskip("fastembed")
    from sentence_transformers import SparseEncoder

    folder = peers.write_fastembed_folder(tiny_splade_dir, tmp_path / "fe", "sparse", max_length=48)
    fe = peers.load_fastembed("sparse", folder, "tiny-test", 30522, threads=1)
    st = SparseEncoder(tiny_splade_dir, device="cpu")
    st.max_seq_length = 48
    reference = peers.as_rows("sparse", "st", st.encode_document(TEXTS), 30522)
    ours = peers.as_rows("sparse", "fastembed", list(fe.embed(TEXTS)), 30522)
    assert reference.max() > 0
    assert peers.disagreement("sparse", ours, reference) < 1e-4
