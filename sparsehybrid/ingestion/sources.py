"""Read corpora into :class:`~sparsehybrid.types.Document` streams.

Every reader yields either a Document or a :class:`Rejected` (the record's position or id, the
field, and why), so one malformed line is reported and skipped while the rest goes on.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..types import Document, InvalidRecordError


@dataclass
class Rejected:
    """A source record that cannot be indexed."""

    record: str
    field: str
    reason: str
    #: The record as read (a JSONL line, a CSV row as JSON), kept so it can be fixed and replayed.
    raw: str | None = None
    #: The document id when the record had a usable one: a rejected record is still *present*,
    #: so ``--sync`` never deletes its stored version.
    doc_id: str | None = None

    def __str__(self) -> str:
        return f"{self.record}, field {self.field!r}: {self.reason}"

    @classmethod
    def from_error(cls, err: InvalidRecordError, fallback: str) -> Rejected:
        return cls(err.record_id or fallback, err.field_name, err.reason, doc_id=err.record_id)


SourceItem = Document | Rejected

#: The largest record a reader accepts (MiB; ``SPARSEHYBRID_MAX_RECORD_MB``). A larger one is
#: rejected by position without being read whole: one 200 MB line once drove a run to 22 GB.
DEFAULT_MAX_RECORD_MB = 8.0


def max_record_bytes() -> int:
    """The record size limit in bytes, from ``SPARSEHYBRID_MAX_RECORD_MB`` (read at each run)."""
    raw = os.environ.get("SPARSEHYBRID_MAX_RECORD_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_RECORD_MB
    except ValueError:
        raise ValueError(f"SPARSEHYBRID_MAX_RECORD_MB must be a number of MiB, got {raw!r}") from None
    if mb <= 0:
        raise ValueError(f"SPARSEHYBRID_MAX_RECORD_MB must be positive, got {raw!r}")
    return int(mb * 2**20)


def too_large(size: int, limit: int) -> str:
    return f"is {size:,} bytes, over the {limit:,}-byte record limit (SPARSEHYBRID_MAX_RECORD_MB)"


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
        """A Document, or a Rejected that names the record and the field at fault."""
        item = self._build(record, where)
        if isinstance(item, Rejected) and item.raw is None:
            item.raw = _as_json(record)
        return item

    def _build(self, record: Any, where: str) -> SourceItem:
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
            return Rejected(raw_id, self.text, "missing", doc_id=raw_id)
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
        doc = Document(id=raw_id, text=text, title=title or None, metadata=metadata)
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
        limit = max_record_bytes()
        with open(self.path, "rb") as fh:
            for lineno in itertools.count(1):
                raw = fh.readline(limit + 2)  # the line and its newline, or one byte more than allowed
                if not raw:
                    return
                where = f"{self.path.name}:{lineno}"
                complete = raw.endswith(b"\n")
                size = len(raw) - complete
                if size > limit:
                    size += 0 if complete else _skip_line(fh)
                    yield Rejected(where, "(line)", f"the record {too_large(size, limit)}")
                    continue
                if not raw.strip():
                    continue
                if lineno == 1 and raw.startswith(UTF8_BOM):  # written by many Windows tools
                    raw = raw[len(UTF8_BOM) :]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    kept = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
                    yield Rejected(where, "(line)", f"invalid UTF-8 at byte {exc.start}", kept)
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Rejected(
                        where, "(line)", f"malformed JSON: {exc.msg} at column {exc.colno}", line.rstrip("\r\n")
                    )
                    continue
                except RecursionError:
                    yield Rejected(where, "(line)", "JSON nested too deeply to read", line[:1000])
                    continue
                yield self.fields.build(record, where)


def _skip_line(fh: Any, piece: int = 1 << 20) -> int:
    """Read past the rest of the current line a piece at a time; returns its length (no newline)."""
    skipped = 0
    while True:
        part = fh.readline(piece)
        if not part or part.endswith(b"\n"):
            return skipped + len(part) - part.endswith(b"\n")
        skipped += len(part)


def beir_corpus(folder: str | Path) -> Path:
    """The corpus file of a BEIR folder (``corpus.jsonl``)."""
    path = Path(folder) / "corpus.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a BEIR folder: {path} is missing")
    return path


def open_source(path: str | Path, fields: FieldMap | None = None, format: str | None = None) -> Iterator[SourceItem]:
    """Pick a reader by ``format`` or by what ``path`` is: a ``.jsonl``/``.csv``/``.tsv``/``.parquet``
    file, a BEIR folder, or a folder of ``.txt``/``.md`` files.

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
    return {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(suffix, suffix)


@dataclass
class CsvSource:
    """A CSV (or TSV) file with a header row; every cell is a string (ids included)."""

    path: Path
    fields: FieldMap = field(default_factory=FieldMap)
    delimiter: str = ","

    def __iter__(self) -> Iterator[SourceItem]:
        import csv

        limit = max_record_bytes()
        csv.field_size_limit(limit)  # long documents are the point, but not past the record limit
        # surrogateescape: an invalid UTF-8 byte rejects its row instead of ending the whole file.
        # utf-8-sig: a byte-order mark is not part of the first column's name.
        with open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=self.delimiter, restval=_MISSING)  # type: ignore[call-overload]  # a sentinel restval tells a short row from an empty field
            if not reader.fieldnames:
                return
            last = reader.line_num
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # e.g. a NUL byte, or a field over the record limit
                    reason = (
                        f"a field is over the {limit:,}-byte record limit (SPARSEHYBRID_MAX_RECORD_MB)"
                        if "field limit" in str(exc)
                        else f"malformed CSV: {exc}"
                    )
                    yield Rejected(f"{self.path.name}:{reader.line_num}", "(row)", reason)
                    last = reader.line_num
                    continue
                first, last = last + 1, reader.line_num
                where = f"{self.path.name}:{first}" if first >= last else f"{self.path.name}:{first}-{last}"
                if None in row:  # more cells than header columns
                    yield Rejected(
                        where,
                        "(row)",
                        f"{len(row[None])} cell(s) more than the {len(reader.fieldnames)} header columns",
                    )
                    continue
                short = [k for k, v in row.items() if v is _MISSING]
                if short:  # fewer cells: often an unclosed quote that swallowed the next lines
                    hint = " (an unclosed quote?)" if first < last else ""
                    yield Rejected(
                        where,
                        "(row)",
                        f"{len(row) - len(short)} cell(s) but the header has {len(reader.fieldnames)} columns{hint}",
                    )
                    continue
                bad = next((k for k, v in row.items() if _has_surrogate(v)), None)
                if bad is not None:
                    yield Rejected(where, bad, "invalid UTF-8")
                    continue
                yield self.fields.build(dict(row), where)


_MISSING = object()
UTF8_BOM = b"\xef\xbb\xbf"


def _as_json(record: Any) -> str | None:
    """The record as one JSON line for the dead-letter file (None if it cannot be written)."""
    try:
        return json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return None


def _has_surrogate(text: object) -> bool:
    return isinstance(text, str) and any("\udc80" <= ch <= "\udcff" for ch in text)


@dataclass
class ParquetSource:
    """A Parquet file, read in row batches so a large file never sits in memory whole."""

    path: Path
    fields: FieldMap = field(default_factory=FieldMap)
    batch_rows: int = 1024

    def __iter__(self) -> Iterator[SourceItem]:
        import pyarrow.parquet as pq

        limit = max_record_bytes()
        row = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows):
            for record in batch.to_pylist():
                row += 1
                where = f"{self.path.name}:row {row}"
                size = sum(len(v) for v in record.values() if isinstance(v, (str, bytes)))
                if size > limit:
                    yield Rejected(where, "(row)", f"the record {too_large(size, limit)}")
                    continue
                yield self.fields.build(record, where)


@dataclass
class TextDirSource:
    """A folder of ``.txt``/``.md`` files (recursively): id = relative path, title = first
    Markdown heading or the file stem, metadata = the extension."""

    path: Path
    fields: FieldMap = field(default_factory=FieldMap)
    suffixes: tuple[str, ...] = (".txt", ".md", ".markdown")

    def __iter__(self) -> Iterator[SourceItem]:
        limit = max_record_bytes()
        files = sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in self.suffixes)
        for f in files:
            rel = f.relative_to(self.path).as_posix()
            size = f.stat().st_size
            if size > limit:
                yield Rejected(rel, "text", f"the file {too_large(size, limit)}")
                continue
            try:
                text = f.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                yield Rejected(rel, "text", f"invalid UTF-8 at byte {exc.start}")
                continue
            if not text.strip():  # the stem as a title must not make an empty file indexable
                yield Rejected(rel, "text", "is empty or whitespace only")
                continue
            doc = Document(
                id=rel,
                text=text,
                title=_markdown_title(text) or f.stem,
                metadata={"extension": f.suffix.lower().lstrip(".")},
            )
            try:
                doc.validate()
            except InvalidRecordError as err:
                yield Rejected.from_error(err, rel)
                continue
            yield doc


def _markdown_title(text: str) -> str | None:
    """The first ATX heading (``# Title``), outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and stripped.startswith("#"):
            title = stripped.lstrip("#")
            if title[:1] in (" ", "\t") and title.strip().strip("#").strip():
                return title.strip().strip("#").strip()
    return None


READERS: dict[str, Any] = {
    "jsonl": lambda p, f: JsonlSource(p, f),
    "beir": lambda p, f: JsonlSource(beir_corpus(p), f),
    "csv": lambda p, f: CsvSource(p, f),
    "tsv": lambda p, f: CsvSource(p, f, delimiter="\t"),
    "parquet": lambda p, f: ParquetSource(p, f),
    "dir": lambda p, f: TextDirSource(p, f),
}
