"""Bad input: each bad record is rejected with an error naming the record and the field, goes to
the dead-letter file and the run's stats, and the rest of the batch is indexed."""

from __future__ import annotations

import datetime
import json
import logging
import re

import pytest

from sparsehybrid.connectors.filters import FilterError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.dead_letter import read_dead_letter
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.ingestion.sources import open_source
from sparsehybrid.search import MAX_QUERY_CHARS, HybridSearcher
from sparsehybrid.types import Document, point_id
from tests.support import as_documents, cranfield_rows

PAYLOAD_KEYS = {"doc_id", "chunk", "n_chunks", "start", "end", "text", "title", "metadata", "content_hash"}


def stored_docs(store: QdrantEdgeStore) -> dict[str, dict]:
    return {p.payload["doc_id"]: p.payload for p in store.iter_points() if p.payload["chunk"] == 0}


def test_bad_jsonl_lines_are_rejected_by_line_and_field_and_the_rest_is_indexed(tmp_path):
    lines = [
        '{"_id": "a", "text": "wing flutter at transonic speed", "lang": "en"}',
        '{"_id": "empty", "text": ""}',
        '{"_id": "blank", "text": " \\t\\n "}',
        '{"text": "a record without any id"}',
        '{"_id": ["not", "a", "string"], "text": "list id"}',
        '{"_id": "b", "text": "first version of b"}',
        '{"_id": "nan-meta", "text": "metadata holds NaN", "score": NaN}',
        '{"_id": "c", "text": "boundary layer suction',  # malformed JSON (line 8)
        '{"_id": "d", "text": "shock wave interaction"}',
        '{"_id": "b", "text": "second version of b wins"}',
    ]
    raw = (
        "\n".join(lines).encode("utf-8")
        + b'\n{"_id": "bad-utf8", "text": "caf\xe9 au lait"}\n{"_id": "e", "text": "last good line"}\n'
    )
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(raw)
    dead = tmp_path / "dead" / "rejected.jsonl"

    store = QdrantEdgeStore(tmp_path / "idx")
    stats = Indexer(store, bm25=True, batch_size=3).index(open_source(src), dead_letter=dead)

    assert set(stored_docs(store)) == {"a", "b", "d", "e"}
    assert stored_docs(store)["b"]["text"] == "second version of b wins"  # last wins
    assert (stats.seen, stats.added, stats.duplicates, len(stats.rejected)) == (4, 4, 1, 7)
    assert stats.as_dict()["rejected"] == 7

    rows = read_dead_letter(dead)
    got = {(r["record"], r["field"]) for r in rows}
    assert got == {
        ("empty", "text"),
        ("blank", "text"),
        ("corpus.jsonl:4", "id"),  # neither _id nor id
        ("corpus.jsonl:5", "_id"),
        ("nan-meta", "metadata"),
        ("corpus.jsonl:8", "(line)"),
        ("corpus.jsonl:11", "(line)"),
    }
    reasons = {r["record"]: r["reason"] for r in rows}
    assert "empty or whitespace" in reasons["blank"]
    assert "not JSON serialisable" in reasons["nan-meta"]
    assert "malformed JSON" in reasons["corpus.jsonl:8"]
    assert "invalid UTF-8" in reasons["corpus.jsonl:11"]
    assert all(datetime.datetime.fromisoformat(r["at"]).tzinfo is not None for r in rows)
    assert len({r["at"] for r in rows}) == 1  # one run, one timestamp

    # A second run appends (the file is a log of every run), and re-indexes nothing.
    again = Indexer(store, bm25=True, batch_size=3).index(open_source(src), dead_letter=dead)
    assert (again.unchanged, again.added, len(again.rejected)) == (4, 0, 7)
    assert len(read_dead_letter(dead)) == 14
    store.close()


def test_bad_csv_rows_are_rejected_and_do_not_swallow_their_neighbours(tmp_path):
    src = tmp_path / "docs.csv"
    src.write_bytes(
        b"id,text,lang\n"
        b"1,supersonic inlet design,en\n"
        b"2,caf\xe9 with a latin-1 byte,fr\n"  # invalid UTF-8
        b"3,too,many,cells,here\n"
        b",no id at all,en\n"
        b"4,panel flutter,en\n"
        b'5,"an unclosed quote,en\n'  # swallows the lines after it
        b"6,hidden by the quote,en\n"
    )
    items = list(open_source(src))
    good = [i for i in items if isinstance(i, Document)]
    rejected = {(r.record, r.field): r.reason for r in items if not isinstance(r, Document)}
    assert [d.id for d in good] == ["1", "4"]
    assert set(rejected) == {
        ("docs.csv:3", "text"),
        ("docs.csv:4", "(row)"),
        ("docs.csv:5", "id"),
        ("docs.csv:7-8", "(row)"),
    }
    assert "invalid UTF-8" in rejected[("docs.csv:3", "text")]
    assert "more than the 3 header columns" in rejected[("docs.csv:4", "(row)")]
    assert "unclosed quote" in rejected[("docs.csv:7-8", "(row)")]  # lines 7-8 are reported, not silently merged

    store = QdrantEdgeStore(tmp_path / "idx")
    stats = Indexer(store, bm25=True).index(open_source(src), dead_letter=tmp_path / "dead.jsonl")
    assert set(stored_docs(store)) == {"1", "4"} and len(stats.rejected) == 4
    assert len(read_dead_letter(tmp_path / "dead.jsonl")) == 4
    store.close()


def test_documents_passed_directly_are_validated_field_by_field(tmp_path):
    docs = [
        Document("ok-1", "compressible flow over a cone"),
        Document(None, "no id"),  # type: ignore[arg-type]
        Document(42, "integer id"),  # type: ignore[arg-type]
        Document("   ", "blank id"),
        Document("ws", "   \n\t"),
        Document("when", "a date in metadata", metadata={"at": datetime.date(2024, 1, 1)}),
        Document("tags", "a set in metadata", metadata={"tags": {"a", "b"}}),
        Document("inf", "infinity in metadata", metadata={"x": float("inf")}),
        Document("ok-2", "heat transfer to a flat plate", metadata={"year": 1962}),
    ]
    store = QdrantEdgeStore(tmp_path / "idx")
    stats = Indexer(store, bm25=True, batch_size=4).index(docs)
    assert set(stored_docs(store)) == {"ok-1", "ok-2"}
    got = {(r.record, r.field) for r in stats.rejected}
    assert got == {
        ("document #2", "id"),
        ("document #3", "id"),
        ("document #4", "id"),
        ("ws", "text"),
        ("when", "metadata"),
        ("tags", "metadata"),
        ("inf", "metadata"),
    }
    assert all(
        str(r).startswith(r.record) and repr(r.field) in str(r) for r in stats.rejected
    )  # names record and field
    store.close()


def test_text_longer_than_the_model_is_chunked_and_every_part_is_covered(tmp_path, tiny_splade_dir, cranfield):
    from sparsehybrid.encoders.sparse import SparseEncoder

    sparse = SparseEncoder(tiny_splade_dir, max_length=32, batch_size=16)
    body = " ".join(r["text"] for r in cranfield_rows(cranfield, 6))
    body += " Ünïcödé naïve café – 空気力学 — emoji 🚀 and a final zeppelinmoor phrase."
    long_doc = Document("long", body, "a long one")
    short = Document("short", "lift of a slender wing")
    store = QdrantEdgeStore(tmp_path / "idx")
    stats = Indexer(store, sparse, bm25=True, batch_size=8, chunk_overlap=4).index([long_doc, short])

    chunks = sorted((p.payload for p in store.iter_points() if p.payload["doc_id"] == "long"), key=lambda p: p["chunk"])
    n = len(chunks)
    assert n > 10 and [c["chunk"] for c in chunks] == list(range(n)) and all(c["n_chunks"] == n for c in chunks)
    assert stats.chunks == n + 1 and store.count() == n + 1
    covered = [False] * len(body)
    for c in chunks:
        assert c["text"] == body[c["start"] : c["end"]]  # spans point into the source
        tokens = sparse.tokenizer(c["title"] + " " + c["text"])["input_ids"]
        assert len(tokens) <= 32  # each chunk fits the model: nothing is cut by the encoder
        for i in range(c["start"], c["end"]):
            covered[i] = True
    missed = [i for i, ch in enumerate(body) if not ch.isspace() and not covered[i]]
    assert missed == [], f"characters in no chunk: {[body[i] for i in missed][:20]}"
    assert store.search_bm25("zeppelinmoor", 3)[0].doc_id == "long"  # the very end is searchable
    store.close()


def test_bad_vectors_from_a_custom_encoder_reject_only_their_record(tmp_path, tf_encoder):
    docs = [
        Document("good-1", "laminar boundary layer on a flat plate"),
        Document("nan", "the encoder builds NaN for nanpoison"),
        Document("inf", "the encoder returns infinity for infpoison"),
        Document("neg", "the encoder returns a negative weight for negpoison"),
        Document("oov", "the encoder returns an unknown token for oovpoison"),
        Document("good-2", "supersonic flow past a cone"),
    ]
    store = QdrantEdgeStore(tmp_path / "idx")
    dead = tmp_path / "dead.jsonl"
    stats = Indexer(store, tf_encoder, bm25=True, batch_size=6).index(docs, dead_letter=dead)

    assert set(stored_docs(store)) == {"good-1", "good-2"} and store.count() == 2
    assert (stats.seen, stats.added, len(stats.rejected)) == (2, 2, 4)
    rows = {r["record"]: r for r in read_dead_letter(dead)}
    assert set(rows) == {"nan", "inf", "neg", "oov"} and {r["field"] for r in rows.values()} == {"sparse"}
    assert "NaN" in rows["nan"]["reason"] and "infinite" in rows["inf"]["reason"]
    assert "negative" in rows["neg"]["reason"] and "vocabulary" in rows["oov"]["reason"]

    # A bad new version of a stored document is rejected; the stored version stays (and sync keeps it).
    fixed = [Document("good-1", "laminar boundary layer negpoison"), Document("good-2", "supersonic flow past a cone")]
    again = Indexer(store, tf_encoder, bm25=True).index(fixed, sync=True)
    assert [r.record for r in again.rejected] == ["good-1"] and again.deleted == 0
    assert stored_docs(store)["good-1"]["text"] == "laminar boundary layer on a flat plate"
    store.close()


def test_an_encoder_error_that_is_not_a_records_fault_still_stops_the_run(tmp_path, tf_encoder):
    class Broken(type(tf_encoder)):
        def encode_document(self, texts):
            raise RuntimeError("CUDA out of memory")

    store = QdrantEdgeStore(tmp_path / "idx")
    with pytest.raises(RuntimeError, match="out of memory"):
        Indexer(store, Broken(), bm25=True).index([Document("a", "text")])  # not silently dead-lettered
    store.close()


def test_empty_sparse_vector_is_stored_reported_and_found_by_dense(tmp_path, tf_encoder, minilm, caplog):
    """Decision: a document whose sparse vector is empty (punctuation only) is stored, counted in
    ``stats.empty_sparse`` and logged; sparse and BM25 cannot match it, dense search finds it."""
    docs = [Document("punct", "?!?! ... --- !!!"), Document("words", "pressure distribution on a delta wing")]
    store = QdrantEdgeStore(tmp_path / "idx")
    with caplog.at_level(logging.WARNING, logger="sparsehybrid.ingestion.indexing"):
        stats = Indexer(store, tf_encoder, minilm, bm25=True).index(docs)
    assert stats.added == 2 and stats.empty_sparse == 1 and not stats.rejected
    assert "empty sparse vector" in caplog.text and "'punct'" in caplog.text
    (point,) = store.get([point_id("punct", 0)], with_sparse=True)
    assert set(point.payload) >= PAYLOAD_KEYS and point.sparse is None
    searcher = HybridSearcher(store, tf_encoder, minilm)
    assert searcher.search("?!?! ... !!!", top_k=1, mode="dense")[0].doc_id == "punct"
    hits = searcher.search("?!?! ... !!!", top_k=2, mode="hybrid")  # empty sparse/BM25 queries: no error
    assert hits[0].doc_id == "punct" and [e.retriever for e in hits[0].explanation.retrievers] == ["dense"]
    store.close()


@pytest.fixture
def searchable(tmp_path, tf_encoder, cranfield):
    rows = cranfield_rows(cranfield, 40)
    for i, r in enumerate(rows):
        r["lang"] = "en" if i % 2 else "fr"
    store = QdrantEdgeStore(tmp_path / "idx")
    Indexer(store, tf_encoder, bm25=True).index(as_documents(rows))
    yield store, HybridSearcher(store, tf_encoder)
    store.close()


DSL_QUERY = 'title:wing AND (flow OR "lift")^3 {"match_all": {}} *:* ~2 /reg.*ex/ \\" OR 1=1; -- $where'


def test_queries_empty_huge_or_full_of_query_syntax(searchable):
    store, searcher = searchable
    for empty in ["", "   \n\t"]:
        with pytest.raises(ValueError, match="query is empty"):
            searcher.search(empty)
    huge = "wing " * (100 * 1024 // 5 + 1)  # > 100 KB
    with pytest.raises(ValueError, match=rf"{len(huge)} characters long; the limit is {MAX_QUERY_CHARS}"):
        searcher.search(huge)
    at_limit = ("boundary layer " * MAX_QUERY_CHARS)[:MAX_QUERY_CHARS]
    assert searcher.search(at_limit, top_k=3, mode="hybrid")  # the longest allowed query works on every retriever
    for mode in ("sparse", "bm25", "hybrid"):
        hits = searcher.search(DSL_QUERY, top_k=5, mode=mode)
        assert hits and all(set(h.metadata) == {"lang"} for h in hits)  # syntax is just text: no error, no injection
    assert store.count() == 40  # and nothing was changed by it


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_query_syntax_is_sent_to_search_engines_as_a_json_value(engine):
    from sparsehybrid.connectors import open_store
    from sparsehybrid.connectors.filters import parse_filter

    store = open_store(f"{engine}://127.0.0.1:9/idx")  # building request bodies contacts nothing
    conds = parse_filter({"lang": 'en" OR 1=1'})
    body = store.bm25_search_body(DSL_QUERY, 10, conds)
    assert body["query"]["bool"]["must"] == [{"match": {"full_text": {"query": DSL_QUERY}}}]
    assert body["query"]["bool"]["filter"] == [{"term": {"metadata.lang": 'en" OR 1=1'}}]
    text = json.dumps(body)
    assert json.loads(text) == body and "query_string" not in text
    values = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            values.append(x)

    walk(body)
    assert values.count(DSL_QUERY) == 1 and not any(DSL_QUERY in v and v != DSL_QUERY for v in values)


def test_filter_on_an_unknown_field_is_refused_by_name(searchable):
    store, searcher = searchable
    assert len(searcher.search("wing", top_k=50, mode="bm25", filter={"lang": "en"})) > 0
    with pytest.raises(
        FilterError, match=re.escape("filter field 'language' is not a metadata field of this collection; known: lang")
    ):
        searcher.search("wing", filter={"language": "en"})
    with pytest.raises(FilterError, match="'language'"):
        store.count({"language": "en"})
    with pytest.raises(FilterError, match="unknown operators"):
        searcher.search("wing", filter={"lang": {"$ne": "en"}})
    with pytest.raises(FilterError, match="not a valid metadata field name"):
        searcher.search("wing", filter={"lang) OR (1": "en"})
