"""What the query layer and the indexer need from an encoder: structural types, not base classes.

Any object with these methods works (the tests use tiny hand-built encoders), so a user can plug
in an ONNX, a remote or a hand-rolled model without subclassing ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..types import SparseVector


@runtime_checkable
class SparseQueryEncoder(Protocol):
    """A learned-sparse encoder: token-id weights, decodable back to tokens for explanations."""

    @property
    def name(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    def encode_query(self, texts: Sequence[str]) -> Sequence[SparseVector]: ...

    def encode_document(self, texts: Sequence[str]) -> Sequence[SparseVector]: ...

    def explain_overlap(
        self, query: SparseVector, document: SparseVector, top_k: int = 8
    ) -> list[tuple[str, float]]: ...


@runtime_checkable
class DenseQueryEncoder(Protocol):
    """A dense encoder: fixed-size float vectors compared by cosine similarity."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_query(self, texts: Sequence[str]) -> Any: ...

    def encode_document(self, texts: Sequence[str]) -> Any: ...


@runtime_checkable
class PassageReranker(Protocol):
    """A cross-encoder: one relevance score per (query, passage) pair."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...
