"""How an index job finds the service that owns an embedded store: a small file in the store.

An embedded store admits one process. While ``sparsehybrid serve`` holds it, the service writes
``sparsehybrid-service.json`` (its loopback URL, its pid and a random write token, readable only
by the store's owner) into the store directory; ``open_store`` reads it and sends the job's writes
through the service instead of failing on the lock. Whoever can read the store directory may
write to it anyway, so the token grants nothing new; without it, any local user could write.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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


def publish(store_dir: str | os.PathLike[str], url: str) -> ServiceInfo:
    """Write the service file (mode 0600, atomically) and return what it says."""
    info = ServiceInfo(url=url, pid=os.getpid(), token=secrets.token_urlsafe(32))
    path = Path(store_dir) / SERVICE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": info.url, "pid": info.pid, "token": info.token}, fh)
    os.replace(tmp, path)
    return info


def withdraw(store_dir: str | os.PathLike[str], info: ServiceInfo) -> None:
    """Remove the service file if it is still ours."""
    found = read(store_dir, check_alive=False)
    if found is not None and found.pid == info.pid and found.token == info.token:
        with contextlib.suppress(FileNotFoundError):
            (Path(store_dir) / SERVICE_FILE).unlink()


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
