"""What many tests share: small corpora from the shared datasets, a free localhost port, and a
real (if simple) custom sparse encoder that needs no model weights (plumbing tests only)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from sparsehybrid.types import Document, SparseVector

CORPUS_FIELDS = ("_id", "title", "text")


def cranfield_rows(cranfield: Path, n: int) -> list[dict]:
    """The first ``n`` Cranfield documents with non-empty text, as JSON objects."""
    out = []
    with open(cranfield / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row.get("text", "").strip():
                out.append({k: row[k] for k in CORPUS_FIELDS if k in row})
            if len(out) == n:
                break
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def as_documents(rows: list[dict]) -> list[Document]:
    return [
        Document(r["_id"], r["text"], r.get("title"), {k: v for k, v in r.items() if k not in CORPUS_FIELDS})
        for r in rows
    ]


def free_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TermFrequencySparseEncoder:
    """A real custom sparse encoder (SparseEncoder interface): log(1 + tf) over WordPiece ids.

    Words it was told to poison make it misbehave the way a buggy custom model would:
    ``nanpoison`` -> it builds a :class:`SparseVector` with NaN (which raises ``ValueError``),
    ``infpoison`` -> it returns a raw object with an infinite weight, ``negpoison`` -> a negative
    weight, ``oovpoison`` -> a token id past the vocabulary. Text without any word -> empty vector.
    """

    name = "test/term-frequency"
    max_length = 512

    def __init__(self):
        from transformers import AutoTokenizer

        from sparsehybrid.encoders.models import resolve_model

        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model("splade-tiny")[0])
        self.vocab_size = self.tokenizer.vocab_size

    def _one(self, text: str):
        ids = [
            i
            for i, tok in zip(
                self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.tokenize(text)
            )
            if tok.isalnum() or tok.startswith("##")
        ]
        tf = Counter(ids)
        idx, val = list(tf), [math.log1p(c) for c in tf.values()]
        low = text.lower()
        if "nanpoison" in low:
            return SparseVector(idx, [float("nan"), *val[1:]])  # raises ValueError, as SparseVector should
        if "infpoison" in low:
            return type("RawSparse", (), {"indices": idx, "values": [float("inf"), *val[1:]]})()
        if "negpoison" in low:
            return SparseVector(idx, [-0.5, *val[1:]])
        if "oovpoison" in low:
            return SparseVector([*idx, self.vocab_size + 7], [*val, 1.0])
        return SparseVector(idx, val)

    def encode_document(self, texts: Sequence[str]) -> list:
        return [self._one(t) for t in texts]

    def encode_query(self, texts: Sequence[str]) -> list:
        return [self._one(t) for t in texts]

    def explain_overlap(self, query: SparseVector, document: SparseVector, top_k: int = 8):
        doc = document.as_dict()
        contrib = sorted(
            ((i, w * doc[i]) for i, w in zip(query.indices, query.values) if i in doc), key=lambda t: -t[1]
        )[:top_k]
        return [(self.tokenizer.convert_ids_to_tokens(i), c) for i, c in contrib]


@contextmanager
def serving(app, port: int | None = None) -> Iterator[str]:
    """``app`` (an ASGI app) on a loopback port, in a thread of this process, for the duration."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def tiny_cross_encoder_dir(path: Path) -> str:
    """A one-layer random-weight BERT cross-encoder (one label) with SPLADE-tiny's tokenizer:
    plumbing only, never quality."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from sparsehybrid.encoders.models import resolve_model

    path.mkdir(parents=True, exist_ok=True)
    splade_dir, _ = resolve_model("splade-tiny")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{splade_dir}/{name}", path / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return str(path)


def write_topic_beir(folder: Path, topics: int = 6, docs_per_topic: int = 4) -> Path:
    """A small BEIR folder whose relevance follows shared words: query i is judged relevant to
    topic i's documents (gain 1 or 2) and not relevant (0) to one other topic's first document."""
    words = ["wing", "flutter", "boundary", "heat", "shock", "nozzle", "rotor", "plate", "cone", "jet", "panel", "gust"]
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for t in range(topics):
        a, b = words[t % len(words)], words[(t * 5 + 3) % len(words)]
        for k in range(docs_per_topic):
            corpus.append(
                {"_id": f"t{t}d{k}", "title": f"{a} study {k}", "text": f"measurements of {a} and {b} case {k}"}
            )
            qrels.append(f"q{t}\tt{t}d{k}\t{2 if k == 0 else 1}")
        queries.append({"_id": f"q{t}", "text": f"{folder.name}: {a} {b} measurements"})
        qrels.append(f"q{t}\tt{(t + 1) % topics}d0\t0")
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return folder
