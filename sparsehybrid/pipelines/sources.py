"""Read corpora into :class:`~sparsehybrid.types.Document` streams.

Every reader yields either a Document or a :class:`Rejected` (the record's position or id, the
field, and why), so one malformed line is reported and skipped while the rest goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

from ..types import Document, InvalidRecordError


@dataclass
class Rejected:
    """A source record that cannot be indexed."""

    record: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.record}, field {self.field!r}: {self.reason}"

    @classmethod
    def from_error(cls, err: InvalidRecordError, fallback: str) -> Rejected:
        return cls(err.record_id or fallback, err.field_name, err.reason)


SourceItem = Union[Document, Rejected]


@dataclass
class FieldMap:
    """Which source fields hold the id, text, title and metadata.

    ``id=None`` tries ``_id`` then ``id``. ``metadata=None`` takes a ``metadata`` object if the
    record has one, else every other field; a list names the fields to keep.
    """

    id: str | None = None
    text: str = "text"
    title: str | None = "title"
    metadata: list[str] | None = None

    def build(self, record: Any, where: str) -> SourceItem:
        if not isinstance(record, dict):
            return Rejected(where, "(record)", f"expected a JSON object, got {type(record).__name__}")
        id_field = self.id or ("_id" if "_id" in record else "id")
        raw_id = record.get(id_field)
        if isinstance(raw_id, int) and not isinstance(raw_id, bool):
            raw_id = str(raw_id)  # numeric ids (CSV, Parquet) are common and unambiguous
        if not isinstance(raw_id, str) or not raw_id.strip():
            return Rejected(where, id_field, f"missing or not a non-empty string: {raw_id!r}")
        text = record.get(self.text)
        if text is None:
            return Rejected(raw_id, self.text, "missing")
        title = record.get(self.title) if self.title else None
        if title is not None and not isinstance(title, str):
            title = str(title)
        used = {id_field, self.text, self.title}
        if self.metadata is not None:
            metadata = {k: record[k] for k in self.metadata if k in record}
        elif isinstance(record.get("metadata"), dict):
            metadata = dict(record["metadata"])
        else:
            metadata = {k: v for k, v in record.items() if k not in used}
        doc = Document(id=raw_id, text=text if isinstance(text, str) else text, title=title or None, metadata=metadata)
        try:
            doc.validate()
        except InvalidRecordError as err:
            return Rejected.from_error(err, where)
        return doc


@dataclass
class JsonlSource:
    """One JSON object per line (BEIR's corpus.jsonl is one)."""

    path: Path
    fields: FieldMap = field(default_factory=FieldMap)

    def __iter__(self) -> Iterator[SourceItem]:
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                where = f"{self.path.name}:{lineno}"
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Rejected(where, "(line)", f"invalid UTF-8 at byte {exc.start}")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Rejected(where, "(line)", f"malformed JSON: {exc.msg} at column {exc.colno}")
                    continue
                yield self.fields.build(record, where)


def beir_corpus(folder: str | Path) -> Path:
    """The corpus file of a BEIR folder (``corpus.jsonl``)."""
    path = Path(folder) / "corpus.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a BEIR folder: {path} is missing")
    return path


def open_source(path: str | Path, fields: FieldMap | None = None, format: str | None = None) -> Iterator[SourceItem]:
    """Pick a reader by ``format`` or by what ``path`` is: a ``.jsonl`` file or a BEIR folder.

    Other formats register in :data:`READERS` (``format name -> callable(path, fields)``).
    """
    p = Path(path)
    fields = fields or FieldMap()
    fmt = format or _guess_format(p)
    if fmt not in READERS:
        raise ValueError(f"unknown source format {fmt!r} for {p}; known: {', '.join(sorted(READERS))}")
    return iter(READERS[fmt](p, fields))


def _guess_format(p: Path) -> str:
    if p.is_dir():
        if (p / "corpus.jsonl").exists():
            return "beir"
        return "dir"
    suffix = p.suffix.lower().lstrip(".")
    return {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}.get(suffix, suffix)


READERS: dict[str, Any] = {
    "jsonl": lambda p, f: JsonlSource(p, f),
    "beir": lambda p, f: JsonlSource(beir_corpus(p), f),
}
