"""What a server of a given version can do, decided once per store from the version it reports.

The connectors support a range of server versions, and some features arrived late: a request the
server does not understand fails (or worse, is silently ignored: a Qdrant 1.16 server drops RRF
weights). So each store reads the server's version (and, for Elasticsearch, its licence) when it
first talks to it, and this module decides per feature what is used. Whatever the server cannot
do runs client-side with the same formula; :func:`log_fallbacks` says so in one log line.

| backend | server-side RRF | weighted RRF | notes |
|---|---|---|---|
| OpenSearch | >= 2.19 (``score-ranker-processor``) | >= 3.1 | weights must sum to 1.0 |
| Elasticsearch | >= 8.16 with an Enterprise or trial licence | >= 9.2 | ``sparse_vector`` query >= 8.15 (else sparse search is refused); 8.x needs ``compatible-with=8`` headers |
| Qdrant | >= 1.10 (Query API) | >= 1.17, server and qdrant-client | refused below 1.16 (the schema lives in collection metadata) |
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

Version = tuple[int, int, int]

OPENSEARCH_RRF: Version = (2, 19, 0)
OPENSEARCH_WEIGHTED_RRF: Version = (3, 1, 0)
ELASTICSEARCH_RRF: Version = (8, 16, 0)
ELASTICSEARCH_WEIGHTED_RRF: Version = (9, 2, 0)
ELASTICSEARCH_SPARSE_QUERY: Version = (8, 15, 0)
#: Licences under which Elasticsearch runs the ``rrf`` retriever.
ELASTICSEARCH_RRF_LICENCES = frozenset({"enterprise", "trial"})
QDRANT_WEIGHTED_RRF: Version = (1, 17, 0)
QDRANT_METADATA: Version = (1, 16, 0)


def parse_version(text: str) -> Version:
    """``"9.2.0-SNAPSHOT"`` -> ``(9, 2, 0)``; refuses text with no version number in it."""
    m = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if m is None:
        raise ValueError(f"not a version number: {text!r}")
    major, minor, patch = (int(g) if g else 0 for g in m.groups())
    return major, minor, patch


def version_text(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class ServerFeatures:
    """What one server does itself; ``why`` says, per missing feature, which version it needs."""

    server: str
    server_rrf: bool = True
    weighted_rrf: bool = True
    sparse_query: bool = True
    collection_metadata: bool = True
    why: tuple[str, ...] = ()

    def fuses(self, weighted: bool) -> bool:
        """Whether this server runs an RRF query (with unequal weights when ``weighted``)."""
        return self.server_rrf and (self.weighted_rrf or not weighted)


#: Before the version is known (or where it cannot be read): try everything, fall back on refusal.
UNKNOWN = ServerFeatures("unknown version")


def opensearch_features(version: Version) -> ServerFeatures:
    why = []
    if version < OPENSEARCH_RRF:
        why.append(f"server-side RRF needs OpenSearch >= {version_text(OPENSEARCH_RRF)}")
    if version < OPENSEARCH_WEIGHTED_RRF:
        why.append(f"weighted RRF needs OpenSearch >= {version_text(OPENSEARCH_WEIGHTED_RRF)}")
    return ServerFeatures(
        f"OpenSearch {version_text(version)}",
        server_rrf=version >= OPENSEARCH_RRF,
        weighted_rrf=version >= OPENSEARCH_WEIGHTED_RRF,
        why=tuple(why),
    )


def elasticsearch_features(version: Version, licence: str | None) -> ServerFeatures:
    """``licence`` None: unknown (not allowed to read it); then the cluster's refusal decides."""
    why = []
    licensed = licence is None or licence.lower() in ELASTICSEARCH_RRF_LICENCES
    if version < ELASTICSEARCH_RRF:
        why.append(f"server-side RRF needs Elasticsearch >= {version_text(ELASTICSEARCH_RRF)}")
    if not licensed:
        why.append(f"server-side RRF needs an enterprise or trial licence (this cluster: {licence})")
    if version < ELASTICSEARCH_WEIGHTED_RRF:
        why.append(f"weighted RRF needs Elasticsearch >= {version_text(ELASTICSEARCH_WEIGHTED_RRF)}")
    return ServerFeatures(
        f"Elasticsearch {version_text(version)}" + (f" ({licence} licence)" if licence else ""),
        server_rrf=version >= ELASTICSEARCH_RRF and licensed,
        weighted_rrf=version >= ELASTICSEARCH_WEIGHTED_RRF,
        sparse_query=version >= ELASTICSEARCH_SPARSE_QUERY,
        why=tuple(why),
    )


def qdrant_features(version: Version | None, client_has_weights: bool) -> ServerFeatures:
    """``version`` None: qdrant-client's local mode (only the client matters)."""
    why = []
    server_weights = version is None or version >= QDRANT_WEIGHTED_RRF
    if not server_weights:
        why.append(f"weighted RRF needs Qdrant >= {version_text(QDRANT_WEIGHTED_RRF)}")
    if not client_has_weights:
        why.append(f"weighted RRF needs qdrant-client >= {version_text(QDRANT_WEIGHTED_RRF)}")
    return ServerFeatures(
        "qdrant-client local mode" if version is None else f"Qdrant {version_text(version)}",
        weighted_rrf=server_weights and client_has_weights,
        collection_metadata=version is None or version >= QDRANT_METADATA,
        why=tuple(why),
    )


def log_fallbacks(url: str, features: ServerFeatures) -> None:
    """One log line naming what this server cannot do and therefore runs client-side."""
    if features.why:
        log.warning("%s: %s: %s; fusing client-side there", url, features.server, "; ".join(features.why))
