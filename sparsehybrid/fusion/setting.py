"""A fusion method with its parameters: what ``tune`` chooses and a collection records.

Plain data (JSON-safe via :meth:`to_dict`), so it travels in a collection's schema, a search
request or a benchmark report unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rrf import DEFAULT_RRF_K

#: Method names, as :data:`sparsehybrid.fusion.FUSIONS` knows them.
METHODS = ("rrf", "minmax", "zscore", "dbsf")
#: Old names still accepted everywhere (CLI, API, service, recorded settings): ``weighted`` was
#: min-max normalisation, though every method takes weights.
ALIASES = {"weighted": "minmax"}


def canonical_method(name: str) -> str:
    """``name`` with an old alias replaced by the method's name (``weighted`` -> ``minmax``)."""
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class FusionSetting:
    """``method`` with RRF's ``k`` (ignored by score fusions) and per-retriever ``weights``
    (a retriever left out weighs 1; weight 0 leaves it out of the fusion)."""

    method: str = "rrf"
    k: int = DEFAULT_RRF_K
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", canonical_method(self.method))
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion {self.method!r}; choose one of {sorted(METHODS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"RRF k must be an integer >= 0, got {self.k!r}")
        for name, w in self.weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"weight for {name!r} must be a number >= 0, got {w!r}")
        object.__setattr__(self, "weights", {n: float(w) for n, w in self.weights.items()})

    def __hash__(self) -> int:
        return hash((self.method, self.k, tuple(sorted(self.weights.items()))))

    @property
    def is_plain_rrf(self) -> bool:
        return self.method == "rrf" and self.k == DEFAULT_RRF_K and all(w == 1.0 for w in self.weights.values())

    def weight(self, retriever: str) -> float:
        return float(self.weights.get(retriever, 1.0))

    def describe(self) -> str:
        """Short human form, e.g. ``rrf k=60 sparse=1 dense=2 bm25=0``."""
        parts = [self.method]
        if self.method == "rrf":
            parts.append(f"k={self.k}")
        parts += [f"{n}={w:g}" for n, w in self.weights.items()]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionSetting:
        unknown = set(data) - {"method", "k", "weights"}
        if unknown:
            raise ValueError(f"unknown fusion setting field(s): {sorted(unknown)}")
        return cls(
            method=data.get("method", "rrf"), k=data.get("k", DEFAULT_RRF_K), weights=dict(data.get("weights") or {})
        )
