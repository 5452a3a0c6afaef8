"""Long documents become overlapping token windows that cover the whole text."""

import itertools

import pytest

from sparsehybrid.ingestion.chunking import Chunker
from sparsehybrid.types import Document


@pytest.fixture(scope="module")
def tokenizer(tf_encoder):
    """SPLADE-tiny's tokenizer, from the weight-free encoder (no model to load)."""
    return tf_encoder.tokenizer


def test_short_document_is_one_chunk(tokenizer):
    (chunks,) = Chunker(tokenizer, max_tokens=64).chunk([Document("d", "a short text", title="t")])
    assert len(chunks) == 1
    assert (chunks[0].start, chunks[0].end, chunks[0].text, chunks[0].n_chunks) == (0, 12, "a short text", 1)


def test_long_document_windows_cover_everything_with_overlap(tokenizer):
    words = [f"word{i}" for i in range(400)]
    text = " ".join(words)
    (chunks,) = Chunker(tokenizer, max_tokens=64, overlap=8).chunk([Document("d", text)])
    assert len(chunks) > 5
    assert [c.chunk for c in chunks] == list(range(len(chunks)))
    assert all(c.n_chunks == len(chunks) for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert len(tokenizer(c.text, add_special_tokens=True)["input_ids"]) <= 64
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, "consecutive windows overlap"
    assert {w for c in chunks for w in c.text.split()} == set(words)


def test_title_tokens_count_against_the_window(tokenizer):
    text = " ".join(f"w{i}" for i in range(200))
    title = "a rather long title " * 5
    (chunks,) = Chunker(tokenizer, max_tokens=64).chunk([Document("d", text, title=title)])
    for c in chunks:
        assert len(tokenizer(c.full_text, add_special_tokens=True)["input_ids"]) <= 64


def test_long_document_is_found_by_a_phrase_from_its_end(tmp_path):
    from sparsehybrid import HybridSearcher, Indexer, open_store
    from tests.support import TermFrequencySparseEncoder

    encoder = TermFrequencySparseEncoder()  # weight-free, SPLADE-tiny's tokenizer: chunking, not the model
    encoder.max_length = 256  # windows of 256 tokens, as with the bundled model's session fixture

    filler = " ".join(f"the turbine blade number {i} was inspected for fatigue cracks." for i in range(120))
    long_doc = Document("long", filler + " Finally the hypersonic scramjet inlet ingested a flock of pelicans.")
    others = [Document(f"o{i}", f"notes about compressor stall number {i}") for i in range(5)]
    store = open_store(f"qdrant-edge://{tmp_path}/idx")
    stats = Indexer(store, encoder, None, bm25=True).index([long_doc, *others])
    assert stats.chunks > 4
    hits = HybridSearcher(store, encoder).search("scramjet inlet pelicans", top_k=3)
    assert hits[0].doc_id == "long"
    assert hits[0].chunk == stats.chunks - len(others) - 1  # the last window
    assert "pelicans" in long_doc.text[hits[0].span[0] : hits[0].span[1]]
    store.close()
