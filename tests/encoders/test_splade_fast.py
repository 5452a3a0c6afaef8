"""The fast SPLADE path (issue 6) reproduces sentence-transformers' ``encode_document``.

Speed is not tested here (see ``benchmarks/encode.py``): only that the outputs are the same, on
the bundled SPLADE-tiny with real documents and on tiny random-weight models built on the fly.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from sparsehybrid.encoders.sparse import sparse_rows
from sparsehybrid.encoders.splade_fast import FastSpladeEncoder
from sparsehybrid.types import SparseVector

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))
CRANFIELD = SHARED / "datasets" / "cranfield" / "corpus.jsonl"
ATOL = 1e-4
pytestmark = pytest.mark.slow


def cranfield_texts(n: int) -> list[str]:
    if not CRANFIELD.exists():
        reason = f"shared datasets not found at {CRANFIELD.parent.parent} (set SPARSEHYBRID_SHARED)"
        if os.environ.get("SPARSEHYBRID_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    texts = []
    with CRANFIELD.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            texts.append(f"{(row.get('title') or '').strip()} {row['text']}".strip())
            if len(texts) == n:
                break
    return texts


def reference(model, texts: list[str]) -> list[SparseVector]:
    """What sentence-transformers itself produces for these documents."""
    return sparse_rows(model.encode_document(texts, batch_size=16, convert_to_sparse_tensor=True))


def top_k_agree(ours: SparseVector, theirs: SparseVector, k: int = 10) -> bool:
    """Same top-k token set; a swap is tolerated only between weights tied within ATOL at rank k."""
    ours_top, theirs_top = set(ours.top_k(k).indices), set(theirs.top_k(k).indices)
    if ours_top == theirs_top:
        return True
    ref = theirs.as_dict()
    kth = sorted(ref.values(), reverse=True)[min(k, len(ref)) - 1]
    return all(abs(ref.get(i, 0.0) - kth) <= ATOL for i in ours_top ^ theirs_top)


def assert_same(ours: list[SparseVector], theirs: list[SparseVector]) -> None:
    assert len(ours) == len(theirs)
    for n, (a, b) in enumerate(zip(ours, theirs)):
        assert all(v > 0 for v in a.values), f"document {n} has non-positive weights"
        da, db = a.as_dict(), b.as_dict()
        diff = max((abs(da.get(i, 0.0) - db.get(i, 0.0)) for i in set(da) | set(db)), default=0.0)
        assert diff <= ATOL, f"document {n}: max |diff| {diff:.3g}"
        assert top_k_agree(a, b), f"document {n}: top-10 tokens differ"


# ---------------------------------------------------------------------- the bundled SPLADE-tiny


@pytest.fixture(scope="module")
def splade_tiny():
    from sentence_transformers import SparseEncoder

    from sparsehybrid.encoders.models import ModelNotAvailableError, resolve_model

    try:
        path, _ = resolve_model("splade-tiny")
    except ModelNotAvailableError as exc:
        pytest.skip(str(exc))
    model = SparseEncoder(path, device="cpu")
    model.max_seq_length = 128  # keeps sentence-transformers' side of the comparison quick
    return model


def test_splade_tiny_matches_sentence_transformers_on_real_documents(splade_tiny):
    texts = cranfield_texts(50)
    fast = FastSpladeEncoder.from_sentence_transformer(splade_tiny, batch_size=16)
    assert fast is not None
    ours = fast.encode(texts, max_length=128)
    assert_same(ours, reference(splade_tiny, texts))
    assert all(len(v) > 10 for v in ours)


def test_empty_input_and_truncation_of_very_long_texts(splade_tiny):
    fast = FastSpladeEncoder.from_sentence_transformer(splade_tiny)
    assert fast.encode([], max_length=128) == []
    long_text = " ".join(cranfield_texts(8))  # far beyond 128 tokens
    texts = [long_text, "", "wing"]
    assert_same(fast.encode(texts, max_length=128), reference(splade_tiny, texts))


def cranfield_queries(n: int) -> list[str]:
    path = CRANFIELD.parent / "queries.jsonl"
    if not path.exists():
        pytest.skip(f"no {path}")
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:n]]


def test_query_path_matches_encode_query_one_at_a_time_and_batched(splade_tiny):
    """Issue 14: queries through the fast path, exactly sentence-transformers' ``encode_query``."""
    fast = FastSpladeEncoder.from_sentence_transformer(splade_tiny)
    assert fast is not None and fast.covers_queries
    queries = [*cranfield_queries(40), "wing", "a"]
    expected = sparse_rows(splade_tiny.encode_query(queries, convert_to_sparse_tensor=True))
    one_by_one = [fast.encode([q], max_length=128, task="query")[0] for q in queries]
    assert_same(one_by_one, expected)
    assert_same(fast.encode(queries, max_length=128, task="query"), expected)


def test_sparse_wrapper_encodes_queries_fast_with_unchanged_output(splade):
    assert splade._fast is not None and splade._fast.covers_queries
    queries = ["boundary layer transition on a swept wing", "heat transfer at hypersonic speeds"]
    expected = sparse_rows(splade.model.encode_query(queries, convert_to_sparse_tensor=True))
    assert_same([splade.encode_query([q])[0] for q in queries], expected)


def test_sparse_wrapper_uses_the_fast_path(splade):
    assert splade._fast is not None
    (vec,) = splade.encode_document(["Supersonic flow over a swept wing with boundary layer transition."])
    assert "wing" in [t for t, _ in splade.decode(vec, top_k=15)]


# ---------------------------------------------------------------------- tiny random-weight models


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory) -> Path:
    """A random-weight BERT MLM with a 1000-token vocabulary (not 30522) and its own tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-mlm")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = Counter(w for t in cranfield_texts(400) for w in t.lower().split() if w.isalpha())
    vocab = specials + [w for w, _ in words.most_common(1000 - len(specials))]
    assert len(vocab) == 1000
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.5,  # large weights: logits of either sign, many active dimensions
    )
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_sparse(path: Path):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(path), device="cpu")


def test_other_vocabulary_size_matches_sentence_transformers(tiny_mlm_dir):
    model = load_sparse(tiny_mlm_dir)
    assert model[0].auto_model.config.vocab_size == 1000
    texts = cranfield_texts(30)
    fast = FastSpladeEncoder.from_sentence_transformer(model)
    assert fast is not None
    ours = fast.encode(texts, max_length=64)
    assert_same(ours, reference(model, texts))
    assert max(max(v.indices) for v in ours) < 1000


def other_architecture(name: str):
    """A tiny random-weight config and MLM class of another family (1000-token vocabulary)."""
    import transformers as tf

    common = dict(vocab_size=1000, max_position_embeddings=80, initializer_range=0.5, pad_token_id=0)
    layers = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if name == "distilbert":
        config = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
        return config, tf.DistilBertForMaskedLM
    if name == "roberta":
        return tf.RobertaConfig(**layers, **common), tf.RobertaForMaskedLM
    if name == "modernbert":
        specials = dict(bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3)
        return tf.ModernBertConfig(**layers, **specials, **common), tf.ModernBertForMaskedLM
    raise ValueError(name)


@pytest.mark.parametrize("name", ["distilbert", "roberta", "modernbert"])
def test_other_mlm_architectures_match_sentence_transformers(name, tiny_mlm_dir, tmp_path):
    """The head before the output layer differs per family; it runs through the model's own code."""
    from transformers import BertTokenizerFast

    config, model_class = other_architecture(name)
    torch.manual_seed(0)
    model_class(config).save_pretrained(tmp_path)
    BertTokenizerFast.from_pretrained(tiny_mlm_dir).save_pretrained(tmp_path)
    model = load_sparse(tmp_path)
    texts = cranfield_texts(8)
    fast = FastSpladeEncoder.from_sentence_transformer(model)
    assert fast is not None
    assert_same(fast.encode(texts, max_length=64), reference(model, texts))
    assert fast.covers_queries
    queries = ["wing", "boundary layer"]
    expected = sparse_rows(model.encode_query(queries, convert_to_sparse_tensor=True))
    assert_same(fast.encode(queries, max_length=64, task="query"), expected)


def test_running_max_over_small_tiles_and_left_padding(tiny_mlm_dir):
    """Tiles smaller than a document (column windows) and vocabulary chunks that do not divide
    the vocabulary; left padding moves the real tokens to the end of each row."""
    model = load_sparse(tiny_mlm_dir)
    model.tokenizer.padding_side = "left"
    # With absolute positions, left padding shifts them: sentence-transformers' own output would
    # then depend on which texts share a batch. Without position embeddings it does not.
    with torch.no_grad():
        model[0].auto_model.bert.embeddings.position_embeddings.weight.zero_()
    texts = [*cranfield_texts(12), "lift"]
    fast = FastSpladeEncoder.from_sentence_transformer(model)
    fast.vocab_chunk, fast.tile_tokens = 300, 7
    assert_same(fast.encode(texts, max_length=64), reference(model, texts))


def test_single_threaded_path_matches(tiny_mlm_dir, monkeypatch):
    model = load_sparse(tiny_mlm_dir)
    texts = cranfield_texts(10)
    fast = FastSpladeEncoder.from_sentence_transformer(model, batch_size=4)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = fast.encode(texts, max_length=64)
    finally:
        torch.set_num_threads(previous)
    assert_same(ours, reference(model, texts))


def test_all_zero_vector_becomes_an_empty_sparse_vector(tiny_mlm_dir):
    model = load_sparse(tiny_mlm_dir)
    with torch.no_grad():
        model[0].auto_model.get_output_embeddings().bias.fill_(-1e4)  # no logit can be positive
    fast = FastSpladeEncoder.from_sentence_transformer(model)
    assert fast is not None
    assert fast.encode(["wing", "flow"], max_length=64) == [SparseVector([], []), SparseVector([], [])]


def test_sum_pooling_is_not_covered(tiny_mlm_dir, caplog):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    model = load_sparse(tiny_mlm_dir)
    summed = SparseEncoder(modules=[model[0], SpladePooling(pooling_strategy="sum")], device="cpu")
    with caplog.at_level(logging.INFO, logger="sparsehybrid.encoders.splade_fast"):
        assert FastSpladeEncoder.from_sentence_transformer(summed) is None
    assert "pooling_strategy='sum'" in caplog.text


def test_inference_free_router_encodes_documents_fast(tiny_mlm_dir):
    """Router(query: static weights, document: MLM + SpladePooling): only the document side runs here."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling

    mlm = load_sparse(tiny_mlm_dir)
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer)],
        document_modules=[mlm[0], SpladePooling(pooling_strategy="max")],
    )
    model = SparseEncoder(modules=[router], device="cpu")
    texts = cranfield_texts(6)
    fast = FastSpladeEncoder.from_sentence_transformer(model)
    assert fast is not None
    assert_same(fast.encode(texts, max_length=64), reference(model, texts))
    assert not fast.covers_queries  # the query route is a lookup table, not the MLM
    with pytest.raises(ValueError, match="query path"):
        fast.encode(["wing"], max_length=64, task="query")


def test_inference_free_queries_are_a_table_lookup_equal_to_sentence_transformers(tiny_mlm_dir):
    """The query route of an inference-free model runs no network: a lookup reproduces it exactly."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling

    from sparsehybrid.encoders.static_lookup import StaticQueryLookup

    mlm = load_sparse(tiny_mlm_dir)
    torch.manual_seed(1)
    table = torch.rand(len(mlm.tokenizer.get_vocab())) - 0.2  # some tokens weigh nothing
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=table)],
        document_modules=[mlm[0], SpladePooling(pooling_strategy="max")],
    )
    model = SparseEncoder(modules=[router], device="cpu")
    lookup = StaticQueryLookup.from_sentence_transformer(model)
    assert lookup is not None
    queries = [*cranfield_texts(4), "wing wing flutter", "Übergang — naïve café", "[CLS] x [SEP]", " "]
    assert_same(lookup.encode(queries), reference_queries(model, queries))

    assert StaticQueryLookup.from_sentence_transformer(mlm) is None  # plain SPLADE: its query runs the MLM
    model.prompts = {"query": "query: "}
    assert StaticQueryLookup.from_sentence_transformer(model) is None  # a prompt: sentence-transformers' path


def reference_queries(model, texts: list[str]) -> list[SparseVector]:
    return sparse_rows(model.encode_query(texts, convert_to_sparse_tensor=True))


@pytest.mark.parametrize("length", [8, 64, None])
def test_direct_tokenization_equals_the_transformers_tokenizer(length):
    """Single queries skip transformers' tokenizer wrapper; the ids and token types stay its own."""
    from transformers import AutoTokenizer

    from sparsehybrid.encoders.models import resolve_model
    from sparsehybrid.encoders.splade_fast import _tokenize

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("splade-tiny")[0])
    texts = [*cranfield_texts(5), "", "  ", "Übergang — naïve café 12.5% [SEP] x", "wing " * 300]
    expected = tokenizer(texts, truncation="longest_first", max_length=length, return_attention_mask=False)
    ids, token_types = _tokenize(tokenizer, texts, length)
    assert ids == expected["input_ids"] and token_types == expected["token_type_ids"]


def test_direct_tokenization_forgets_a_tokenizer_that_is_gone():
    """Copies are kept per tokenizer object, not per address: once a tokenizer is collected its
    copies go too, so a new tokenizer (another vocabulary) at the same address cannot reuse them."""
    import gc
    import weakref

    from transformers import AutoTokenizer

    from sparsehybrid.encoders import splade_fast
    from sparsehybrid.encoders.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("splade-tiny")[0])
    splade_fast._tokenize(tokenizer, ["wing flutter"], 16)
    assert tokenizer in splade_fast._BACKENDS  # keyed by the object itself
    gone = weakref.ref(tokenizer)
    del tokenizer
    gc.collect()
    assert gone() is None  # the cache does not keep it alive: its entry went with it
