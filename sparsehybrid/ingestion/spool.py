"""Documents parked on disk between an index run's plan and their batch.

Why: planning reads the whole stream first (the last copy of a duplicate id wins, a sync needs
every id, progress needs the total), and holding every selected document until its batch is
encoded made memory grow with the corpus (~1 KB a passage: 1 GB at a million). The spool writes
each document to an unnamed temporary file as it is read and keeps only its offset, so a run
holds ids, hashes and offsets in memory and reads each batch's texts back when it is encoded.
Works for any stream (a generator, a Prefect source), not only files that can be read twice.
"""

from __future__ import annotations

import pickle
import tempfile
from array import array
from collections.abc import Sequence
from typing import Any

from ..types import Document


class DocumentSpool:
    """An append-only file of documents, read back by position (0, 1, ... in the order added)."""

    def __init__(self, directory: str | None = None):
        # Closed by close() / the with block: the spool lives as long as its run's plan.
        self._file: Any = tempfile.TemporaryFile(prefix="sparsehybrid-spool-", dir=directory)  # noqa: SIM115
        self._offsets = array("q")

    def __len__(self) -> int:
        return len(self._offsets)

    def add(self, doc: Document) -> int:
        """Append ``doc``; returns its position."""
        self._file.seek(0, 2)
        self._offsets.append(self._file.tell())
        pickle.dump(doc, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        return len(self._offsets) - 1

    def load(self, positions: Sequence[int]) -> list[Document]:
        """The documents at ``positions``, in that order."""
        out = []
        for position in positions:
            self._file.seek(self._offsets[position])
            out.append(pickle.load(self._file))
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DocumentSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
