"""Split long documents into overlapping token windows that fit the encoders.

Text past an encoder's max length would otherwise be silently truncated and never searchable.
Windows are cut on the encoder's own tokenizer, and each chunk keeps its character span, so a
hit can point at the passage that matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..types import Chunk, Document


@dataclass
class Chunker:
    """Token-window chunker.

    Args:
        tokenizer: a Hugging Face *fast* tokenizer (offset mappings are needed).
        max_tokens: the encoder's max length, special tokens included.
        overlap: tokens shared by consecutive windows, so a phrase across a cut is still found.
    """

    tokenizer: Any  # a transformers PreTrainedTokenizerFast (no usable static type)
    max_tokens: int = 512
    overlap: int = 32
    min_window: int = 32

    def __post_init__(self) -> None:
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("chunking needs a fast tokenizer (with offset mappings)")
        if self.overlap < 0:
            raise ValueError("overlap must be >= 0")

    def _n_special(self) -> int:
        return len(self.tokenizer("", add_special_tokens=True)["input_ids"])

    def chunk(self, docs: Sequence[Document]) -> list[list[Chunk]]:
        """One list of chunks per document, in order (a short document gives one chunk)."""
        if not docs:
            return []
        special = self._n_special()
        bodies = self.tokenizer(
            [d.text for d in docs], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        titles = self.tokenizer([d.title or "" for d in docs], add_special_tokens=False, verbose=False)["input_ids"]
        out = []
        for i, (doc, offsets, title_ids) in enumerate(zip(docs, bodies["offset_mapping"], titles)):
            # The title is encoded with every chunk, so the window is what the title leaves: any
            # more would be cut off by the encoder. Only a title that fills the model by itself
            # (nothing can then avoid a cut) falls back to min_window.
            budget = self.max_tokens - special - len(title_ids)
            window = budget if budget >= 1 else self.min_window
            out.append(self._windows(doc, offsets, bodies.word_ids(i), window))
        return out

    def _windows(self, doc: Document, offsets: list[tuple[int, int]], word_ids: list, window: int) -> list[Chunk]:
        h = doc.content_hash()
        n_tokens = len(offsets)
        if n_tokens <= window:
            return [Chunk(doc.id, 0, doc.text, 0, len(doc.text), doc.title, doc.metadata, h, 1)]

        def word_start(t: int) -> int:
            # Windows begin and end on word boundaries: a word cut into sub-word pieces would
            # be unsearchable in both chunks.
            while t > 0 and word_ids[t] is not None and word_ids[t] == word_ids[t - 1]:
                t -= 1
            return t

        overlap = min(self.overlap, window // 2)
        spans, s = [], 0
        while True:
            e = min(s + window, n_tokens)
            if e < n_tokens and word_start(e) > s + overlap:
                e = word_start(e)
            spans.append((offsets[s][0], offsets[e - 1][1]))
            if e == n_tokens:
                break
            nxt = word_start(max(e - overlap, s + 1))
            s = nxt if nxt > s else e
        n = len(spans)
        return [Chunk(doc.id, i, doc.text[a:b], a, b, doc.title, doc.metadata, h, n) for i, (a, b) in enumerate(spans)]
