"""The typed values that flow between encoders, stores, fusion and the query layer.

Kept free of heavy imports so that every subpackage (and user code) can use them cheaply.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: Namespace for deterministic point ids: the same (document id, chunk) always maps to the
#: same point, so re-upserting a document replaces it instead of duplicating it.
POINT_ID_NAMESPACE = uuid.UUID("5b1f0c8e-7d7a-4a55-9a52-6f3c2b8d9e10")

Retriever = Literal["sparse", "dense", "bm25"]
SearchMode = Literal["sparse", "dense", "bm25", "hybrid"]


def join_title(title: str | None, text: str) -> str:
    """Title and body as one string: what encoders, BM25 and rerankers see (the BEIR convention)."""
    if title and title.strip():
        return f"{title.strip()} {text}".strip()
    return text


class InvalidRecordError(ValueError):
    """A record (document, vector, query) is malformed. The message names the record and field."""

    def __init__(self, record_id: str | None, field_name: str, reason: str):
        self.record_id = record_id
        self.field_name = field_name
        self.reason = reason
        who = f"record {record_id!r}" if record_id is not None else "record"
        super().__init__(f"{who}, field {field_name!r}: {reason}")


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector as parallel lists of int indices (token ids) and float weights.

    Indices are unique; order is not significant. Construction validates so that a bad
    vector from a custom encoder fails loudly here, not deep inside a store.
    """

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __init__(self, indices: Sequence[int], values: Sequence[float]):
        idx = tuple(int(i) for i in indices)
        val = tuple(float(v) for v in values)
        if len(idx) != len(val):
            raise ValueError(f"sparse vector has {len(idx)} indices but {len(val)} values")
        if len(set(idx)) != len(idx):
            raise ValueError("sparse vector has duplicate indices")
        if any(i < 0 for i in idx):
            raise ValueError("sparse vector has negative indices")
        if any(not math.isfinite(v) for v in val):
            raise ValueError("sparse vector has NaN or infinite values")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "values", val)

    def __len__(self) -> int:
        return len(self.indices)

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values))

    def dot(self, other: SparseVector) -> float:
        mine = self.as_dict()
        return sum(mine.get(i, 0.0) * v for i, v in zip(other.indices, other.values))

    def top_k(self, k: int) -> SparseVector:
        """Keep the k largest weights (pruning); ties broken by index for determinism."""
        if k <= 0 or k >= len(self):
            return self
        order = sorted(range(len(self)), key=lambda j: (-self.values[j], self.indices[j]))[:k]
        return SparseVector([self.indices[j] for j in order], [self.values[j] for j in order])

    def positive(self) -> SparseVector:
        """Only strictly positive weights: what impact-based backends accept."""
        keep = [j for j, v in enumerate(self.values) if v > 0]
        return SparseVector([self.indices[j] for j in keep], [self.values[j] for j in keep])


@dataclass
class Document:
    """A source document. ``metadata`` must be JSON-serialisable: it becomes filterable payload."""

    id: str
    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`InvalidRecordError` naming this record and field when it cannot be indexed."""
        rid = self.id if isinstance(self.id, str) else None
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidRecordError(rid, "id", f"must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str):
            raise InvalidRecordError(rid, "text", f"must be a string, got {type(self.text).__name__}")
        if not self.text.strip() and not (self.title or "").strip():
            raise InvalidRecordError(rid, "text", "is empty or whitespace only")
        if self.title is not None and not isinstance(self.title, str):
            raise InvalidRecordError(rid, "title", f"must be a string, got {type(self.title).__name__}")
        if not isinstance(self.metadata, dict):
            raise InvalidRecordError(rid, "metadata", "must be a JSON object (dict)")
        try:
            encoded = json.dumps(self.metadata, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRecordError(rid, "metadata", f"is not JSON serialisable: {exc}") from None
        except RecursionError:
            raise InvalidRecordError(rid, "metadata", "is nested too deeply") from None
        # A lone surrogate (e.g. JSON "\\ud800") is a str Python accepts but no store can write.
        for name, value in (("id", self.id), ("text", self.text), ("title", self.title or ""), ("metadata", encoded)):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidRecordError(
                    rid.encode("utf-8", "backslashreplace").decode() if name == "id" else rid,
                    name,
                    f"has an invalid character (lone surrogate {value[exc.start]!a}) at position {exc.start}",
                ) from None

    @property
    def full_text(self) -> str:
        """Title and body as one string: what encoders see (the BEIR convention)."""
        return join_title(self.title, self.text)

    def content_hash(self) -> str:
        """Stable hash of everything that affects the stored vectors and payload."""
        blob = json.dumps(
            {"text": self.text, "title": self.title, "metadata": self.metadata},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def point_id(doc_id: str, chunk: int = 0) -> str:
    """Deterministic UUID of one chunk of one document (idempotent upserts)."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, f"{doc_id}\x1f{chunk}"))


@dataclass
class Chunk:
    """One indexed unit: a document or a window of a long document, with its character span."""

    doc_id: str
    chunk: int
    text: str
    start: int
    end: int
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    n_chunks: int = 1

    @property
    def point_id(self) -> str:
        return point_id(self.doc_id, self.chunk)

    @property
    def full_text(self) -> str:
        return join_title(self.title, self.text)


@dataclass
class PointRecord:
    """What a connector stores: a chunk plus its vectors. ``bm25`` needs no vector: stores
    with native BM25 index ``chunk.full_text`` themselves."""

    chunk: Chunk
    sparse: SparseVector | None = None
    dense: Sequence[float] | None = None

    @property
    def id(self) -> str:
        return self.chunk.point_id

    def payload(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "doc_id": c.doc_id,
            "chunk": c.chunk,
            "n_chunks": c.n_chunks,
            "start": c.start,
            "end": c.end,
            "text": c.text,
            "title": c.title,
            "metadata": c.metadata,
            "content_hash": c.content_hash,
        }


@dataclass
class ScoredPoint:
    """One store result: a chunk's payload and its score from one retriever."""

    id: str
    score: float
    payload: dict[str, Any]
    sparse: SparseVector | None = None

    @property
    def doc_id(self) -> str:
        return self.payload["doc_id"]


@dataclass
class RetrieverEvidence:
    """How one retriever saw a hit: its rank (1-based) and raw score."""

    retriever: str
    rank: int
    score: float


@dataclass
class Explanation:
    """Why a hit was returned: per-retriever ranks/scores, the fusion, the rerank, the matched tokens."""

    retrievers: list[RetrieverEvidence] = field(default_factory=list)
    fusion: str | None = None
    fused_score: float | None = None
    rerank_score: float | None = None
    #: For the sparse side: (decoded token, query weight × document weight), largest first.
    sparse_tokens: list[tuple[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{e.retriever}#{e.rank} ({e.score:.3f})" for e in self.retrievers]
        if self.rerank_score is not None:
            parts.append(f"rerank {self.rerank_score:.3f}")
        if self.sparse_tokens:
            parts.append("tokens: " + ", ".join(f"{t}={w:.2f}" for t, w in self.sparse_tokens[:5]))
        return "; ".join(parts)


@dataclass
class Hit:
    """A search result: a document (not a chunk), its final score, and the explanation."""

    doc_id: str
    score: float
    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Which chunk matched best, and its character span in the source document.
    chunk: int = 0
    span: tuple[int, int] | None = None
    explanation: Explanation = field(default_factory=Explanation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "score": self.score,
            "title": self.title,
            "text": self.text,
            "metadata": self.metadata,
            "chunk": self.chunk,
            "span": list(self.span) if self.span else None,
            "explanation": {
                "retrievers": [vars(e) for e in self.explanation.retrievers],
                "fusion": self.explanation.fusion,
                "fused_score": self.explanation.fused_score,
                "rerank_score": self.explanation.rerank_score,
                "sparse_tokens": [list(t) for t in self.explanation.sparse_tokens],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hit:
        """The hit again from :meth:`to_dict`'s form (what the search service sends)."""
        e = d.get("explanation") or {}
        span = d.get("span")
        return cls(
            doc_id=d["doc_id"],
            score=float(d["score"]),
            text=d.get("text", ""),
            title=d.get("title"),
            metadata=d.get("metadata") or {},
            chunk=int(d.get("chunk", 0)),
            span=(int(span[0]), int(span[1])) if span else None,
            explanation=Explanation(
                retrievers=[
                    RetrieverEvidence(r["retriever"], int(r["rank"]), float(r["score"]))
                    for r in e.get("retrievers", [])
                ],
                fusion=e.get("fusion"),
                fused_score=e.get("fused_score"),
                rerank_score=e.get("rerank_score"),
                sparse_tokens=[(str(t), float(w)) for t, w in e.get("sparse_tokens", [])],
            ),
        )
