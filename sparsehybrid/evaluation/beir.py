"""Load a BEIR-layout test collection: corpus, queries and graded relevance judgements.

A BEIR folder holds ``corpus.jsonl`` (read through :func:`~.sources.open_source`, so the corpus
goes through the same validation as ``sparsehybrid index``), ``queries.jsonl`` and
``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header row). Scores are
graded gains; 0 means "judged, not relevant". Queries that cannot be scored (no judgement at all,
or no judgement above 0) are skipped and counted, as trec_eval and BEIR do.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..ingestion.sources import Rejected, open_source
from ..types import Document


class BeirFormatError(ValueError):
    """A BEIR file is malformed; the message names the file, line and field."""


@dataclass
class BeirDataset:
    """One test collection, ready to evaluate.

    ``queries`` holds only the evaluable queries (at least one judgement with score > 0), in file
    order; ``qrels`` keeps every judgement, zeros included (``qid -> doc_id -> gain``).
    """

    name: str
    path: Path
    split: str
    corpus: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    rejected: list[Rejected] = field(default_factory=list)
    skipped_unjudged: list[str] = field(default_factory=list)
    skipped_no_relevant: list[str] = field(default_factory=list)
    qrels_unknown_queries: int = 0
    qrels_unknown_docs: int = 0

    @property
    def n_skipped(self) -> int:
        return len(self.skipped_unjudged) + len(self.skipped_no_relevant)

    def relevant(self) -> dict[str, set[str]]:
        """Binary view (gain > 0) of the judgements of the evaluated queries."""
        return {q: {d for d, g in self.qrels[q].items() if g > 0} for q in self.queries}

    def summary(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "split": self.split,
            "documents": len(self.corpus),
            "rejected_documents": len(self.rejected),
            "queries_evaluated": len(self.queries),
            "queries_skipped_unjudged": len(self.skipped_unjudged),
            "queries_skipped_no_relevant": len(self.skipped_no_relevant),
            "judgements": sum(len(v) for v in self.qrels.values()),
            "qrels_for_unknown_queries": self.qrels_unknown_queries,
            "qrels_for_unknown_documents": self.qrels_unknown_docs,
        }


def read_queries(path: Path) -> dict[str, str]:
    """``queries.jsonl`` -> ``{query id: text}`` (file order kept)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (a BEIR folder needs queries.jsonl)")
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BeirFormatError(f"{where}: malformed JSON: {exc.msg}") from None
            qid = rec.get("_id", rec.get("id")) if isinstance(rec, dict) else None
            if isinstance(qid, int) and not isinstance(qid, bool):
                qid = str(qid)
            if not isinstance(qid, str) or not qid.strip():
                raise BeirFormatError(f"{where}: field '_id' is missing or not a non-empty string")
            text = rec.get("text")
            if not isinstance(text, str) or not text.strip():
                raise BeirFormatError(f"{where} (query {qid}): field 'text' is missing or empty")
            queries[qid] = text
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``qrels/<split>.tsv`` (with header) -> ``{query id: {doc id: gain}}``."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise BeirFormatError(
                f"{path.name}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header!r}"
            )
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise BeirFormatError(f"{path.name}:{lineno}: expected 3 tab-separated fields, got {len(row)}")
            qid, did, raw = row[0].strip(), row[1].strip(), row[2].strip()
            try:
                gain = int(float(raw))
            except ValueError:
                raise BeirFormatError(
                    f"{path.name}:{lineno} (query {qid}, document {did}): field 'score' is not a number: {raw!r}"
                ) from None
            qrels.setdefault(qid, {})[did] = gain
    return qrels


def load_beir(
    path: str | Path, split: str = "test", max_queries: int | None = None, name: str | None = None
) -> BeirDataset:
    """Read a BEIR folder. ``max_queries`` keeps the first N evaluable queries (file order)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory (expected a BEIR folder)")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    corpus: list[Document] = []
    rejected: list[Rejected] = []
    for item in open_source(folder, format="beir"):
        if isinstance(item, Document):
            corpus.append(item)
        else:
            rejected.append(item)
    all_queries = read_queries(folder / "queries.jsonl")
    qrels = read_qrels(qrels_path)
    doc_ids = {d.id for d in corpus}
    ds = BeirDataset(name or folder.name, folder, split, corpus, {}, {}, rejected)
    ds.qrels_unknown_queries = sum(len(v) for q, v in qrels.items() if q not in all_queries)
    ds.qrels_unknown_docs = sum(1 for v in qrels.values() for d in v if d not in doc_ids)
    for qid, text in all_queries.items():
        judged = qrels.get(qid)
        if not judged:
            ds.skipped_unjudged.append(qid)
        elif not any(g > 0 for g in judged.values()):
            ds.skipped_no_relevant.append(qid)
        elif max_queries is None or len(ds.queries) < max_queries:
            ds.queries[qid] = text
            ds.qrels[qid] = dict(judged)
    if not ds.queries:
        raise BeirFormatError(f"{folder}: no query in queries.jsonl has a relevant judgement in {qrels_path.name}")
    return ds
