"""What a search returns: hits, best first, with the time each stage took."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..types import Hit

_STAGES = ("encode", "payloads", "fuse", "rerank", "explain")


@dataclass
class SearchTiming:
    """Seconds spent per stage of one search (returned with its results)."""

    encode: float = 0.0
    retrieve: dict[str, float] = field(default_factory=dict)
    #: Reading the shown hits' whole payloads after ranking (stores with ``partial_payloads``).
    payloads: float = 0.0
    fuse: float = 0.0
    rerank: float = 0.0
    explain: float = 0.0
    total: float = 0.0

    def to_ms(self) -> dict[str, float]:
        """Milliseconds per stage, flat (``retrieve_<retriever>``): the service's ``timing_ms``."""
        out = {name: getattr(self, name) * 1000 for name in _STAGES}
        out.update({f"retrieve_{k}": v * 1000 for k, v in self.retrieve.items()})
        out["total"] = self.total * 1000
        return out

    @classmethod
    def from_ms(cls, ms: Mapping[str, float]) -> SearchTiming:
        """:meth:`to_ms` read back (what a client makes of the service's answer)."""
        return cls(
            retrieve={k.removeprefix("retrieve_"): v / 1000 for k, v in ms.items() if k.startswith("retrieve_")},
            total=ms.get("total", 0.0) / 1000,
            **{name: ms.get(name, 0.0) / 1000 for name in _STAGES},
        )


class SearchResults(list[Hit]):
    """The hits of one search, best first, with the timing of that search."""

    def __init__(self, hits: Sequence[Hit] = (), timing: SearchTiming | None = None):
        super().__init__(hits)
        self.timing = timing or SearchTiming()
