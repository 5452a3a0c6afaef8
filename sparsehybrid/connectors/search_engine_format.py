"""How OpenSearch and Elasticsearch hold a collection: feature names and weights, the index
mappings, each point's document and the bulk bodies that write them.

**Feature names.** A sparse vector's token id ``123`` is stored as the feature name ``"123"``:
reversible (:func:`feature_id`), collision-free, and free of the dots that both engines treat
as object paths. (sentence-transformers' Elasticsearch example stores decoded tokens with "."
replaced by "_", which merges distinct tokens and cannot be inverted; we do not.)

**Weights.** ``rank_features`` (OpenSearch) and ``sparse_vector`` (Elasticsearch) accept only
positive weights, so zero and negative weights are dropped on both sides (SPLADE weights are
>= 0 anyway). Scores are the plain dot product: both queries used here (``neural_sparse`` with
raw ``query_tokens``; ``sparse_vector`` with ``query_vector``) sum ``query weight * stored
weight``, with no ``rank_feature`` saturation. Lucene stores each weight with 9 significant bits
(it keeps the top 9 bits of the float32 mantissa, truncating), so a stored weight and hence a
score can be up to 2**-8 (0.39%) below the exact value; :func:`lucene_feature_value` reproduces it.

**Document layout.** ``_id`` is the point id; ``_source`` holds the payload fields of
:meth:`PointRecord.payload` plus ``full_text`` (title + text, analysed for BM25), ``sparse`` and
``dense``. Metadata strings map to ``keyword``, numbers to ``double``, booleans to ``boolean``
(dynamic templates), so filters are exact. The :class:`CollectionSchema` lives in the index
mapping's ``_meta``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..types import PointRecord, SparseVector
from .base import DENSE, SPARSE, CollectionSchema, StoreError, check_vectors

FULL_TEXT = "full_text"


META_KEY = "sparsehybrid"


#: Fields in ``_source`` that are not payload.
INTERNAL_FIELDS = (SPARSE, DENSE, FULL_TEXT)


PAYLOAD_FIELDS = ("doc_id", "chunk", "n_chunks", "start", "end", "text", "title", "metadata", "content_hash")


#: Smallest weight sent: float32's smallest normal number (Lucene rejects denormals and zero).
MIN_WEIGHT = float(np.finfo(np.float32).tiny)


#: Relative precision of a stored weight (9 significant bits, truncated).
WEIGHT_RTOL = 2.0**-8


#: Built-in language analyzers both engines ship; anything else falls back to ``standard``.
LANGUAGE_ANALYZERS = frozenset(
    [
        "arabic",
        "armenian",
        "basque",
        "bengali",
        "brazilian",
        "bulgarian",
        "catalan",
        "cjk",
        "czech",
        "danish",
        "dutch",
        "english",
        "estonian",
        "finnish",
        "french",
        "galician",
        "german",
        "greek",
        "hindi",
        "hungarian",
        "indonesian",
        "irish",
        "italian",
        "latvian",
        "lithuanian",
        "norwegian",
        "persian",
        "portuguese",
        "romanian",
        "russian",
        "sorani",
        "spanish",
        "swedish",
        "turkish",
        "thai",
    ]
)


def feature_name(token_id: int) -> str:
    """Token id -> feature name: its decimal string."""
    if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
        raise ValueError(f"token id must be a non-negative integer, got {token_id!r}")
    return str(int(token_id))


def feature_id(name: str) -> int:
    """Feature name -> token id; refuses anything :func:`feature_name` cannot have produced."""
    if not name.isascii() or not name.isdigit() or (len(name) > 1 and name[0] == "0"):
        raise ValueError(f"{name!r} is not a sparsehybrid feature name (a token id in decimal)")
    return int(name)


def sparse_features(vector: SparseVector) -> dict[str, float]:
    """The ``{feature name: weight}`` object both engines take; only positive weights."""
    return {feature_name(i): float(v) for i, v in zip(vector.indices, vector.values) if v >= MIN_WEIGHT}


def features_to_sparse(features: Mapping[str, float]) -> SparseVector:
    items = sorted((feature_id(k), float(v)) for k, v in features.items())
    return SparseVector([i for i, _ in items], [v for _, v in items])


def lucene_feature_value(weight: float) -> float:
    """The weight Lucene's FeatureField keeps: float32 with the low 15 mantissa bits cleared."""
    bits = np.array([weight], dtype=np.float32).view(np.uint32)
    return float((bits & np.uint32(0xFFFF8000)).view(np.float32)[0])


def base_mappings(
    schema: CollectionSchema, sparse_mapping: dict[str, Any], dense_mapping: dict[str, Any] | None
) -> dict[str, Any]:
    """The engine-independent part of the index mapping (payload, metadata, BM25 text, _meta)."""
    analyzer = schema.bm25_language if schema.bm25_language in LANGUAGE_ANALYZERS else "standard"
    props: dict[str, Any] = {
        "doc_id": {"type": "keyword"},
        "chunk": {"type": "integer"},
        "n_chunks": {"type": "integer"},
        "start": {"type": "integer"},
        "end": {"type": "integer"},
        "text": {"type": "text", "index": False},
        "title": {"type": "text", "index": False},
        "content_hash": {"type": "keyword", "index": False},
        "metadata": {"type": "object", "dynamic": True},
    }
    if schema.bm25:
        props[FULL_TEXT] = {"type": "text", "analyzer": analyzer}
    if schema.sparse_model:
        props[SPARSE] = sparse_mapping
    if schema.dense_dim and dense_mapping is not None:
        props[DENSE] = dense_mapping
    return {
        "_meta": {META_KEY: schema.to_dict()},
        "dynamic": "strict",
        # A first date-like (or numeric-looking) metadata string would otherwise map its field as
        # date (or number), and a later value that is not would fail its bulk item.
        "date_detection": False,
        "numeric_detection": False,
        "dynamic_templates": [
            {
                "metadata_strings": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword"},
                }
            },
            {
                "metadata_integers": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "long",
                    "mapping": {"type": "double"},
                }
            },
            {
                "metadata_floats": {
                    "path_match": "metadata.*",
                    "match_mapping_type": "double",
                    "mapping": {"type": "double"},
                }
            },
        ],
        "properties": props,
    }


def document_source(record: PointRecord, schema: CollectionSchema) -> dict[str, Any]:
    """``_source`` for one point; raises :class:`StoreError` naming the record on bad vectors."""
    check_vectors(record, schema)
    source = record.payload()
    if schema.bm25:
        source[FULL_TEXT] = record.chunk.full_text
    if schema.sparse_model and record.sparse is not None:
        features = sparse_features(record.sparse)
        if features:
            source[SPARSE] = features
    if schema.dense_dim and record.dense is not None:
        dense = [float(x) for x in record.dense]
        if not any(dense):
            where = f"record {record.chunk.doc_id!r} chunk {record.chunk.chunk}"
            raise StoreError(f"{where}: dense vector is all zeros (cosine similarity is undefined)")
        source[DENSE] = dense
    return source


def bulk_index_body(index: str, records: Sequence[PointRecord], schema: CollectionSchema) -> list[dict[str, Any]]:
    """Bulk API body (action line, source line, ...) indexing every record under its point id."""
    body: list[dict[str, Any]] = []
    for r in records:
        body.append({"index": {"_index": index, "_id": r.id}})
        body.append(document_source(r, schema))
    return body


def bulk_delete_body(index: str, point_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [{"delete": {"_index": index, "_id": pid}} for pid in point_ids]
