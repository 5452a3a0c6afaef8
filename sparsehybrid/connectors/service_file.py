"""The service file: how an index job finds the search service that owns an embedded store.

An embedded store admits one process. While ``sparsehybrid serve`` holds it, the service writes
``sparsehybrid-service.json`` (its loopback URL, its pid and a random write token, readable only
by the store's owner) into the store directory; ``open_index_sink`` reads it and sends the job's
writes through the service instead of failing on the lock. Whoever can read the store directory
may write to it anyway, so the token grants nothing new; without it, any local user could write.

Only the file's format and reading live here (a data format, below the job side and the
service); publishing it is the service's job (:mod:`sparsehybrid.service.discovery`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

SERVICE_FILE = "sparsehybrid-service.json"
#: The header an index job sends its write token in (``/store/*`` endpoints).
WRITE_TOKEN_HEADER = "X-Sparsehybrid-Write-Token"


@dataclass(frozen=True)
class ServiceInfo:
    url: str
    pid: int
    token: str

    def __repr__(self) -> str:  # the token never shows up in logs or tracebacks
        return f"ServiceInfo(url={self.url!r}, pid={self.pid})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def read(store_dir: str | os.PathLike[str], *, check_alive: bool = True) -> ServiceInfo | None:
    """The live service owning ``store_dir``; None if there is none (or it died: a kill -9
    leaves the file behind, and the dead pid says it is stale)."""
    try:
        data = json.loads((Path(store_dir) / SERVICE_FILE).read_text())
        info = ServiceInfo(url=str(data["url"]), pid=int(data["pid"]), token=str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and not pid_alive(info.pid):
        return None
    return info
