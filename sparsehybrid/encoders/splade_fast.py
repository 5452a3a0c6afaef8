"""Fast SPLADE document encoding (being written: see issue 6)."""

from __future__ import annotations


class FastSpladeEncoder:
    @classmethod
    def from_sentence_transformer(cls, model, batch_size: int = 32):
        return None
