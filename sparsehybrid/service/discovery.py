"""Publishing the service file that lets index jobs find this service (the format and reading
it are :mod:`sparsehybrid.connectors.service_file`, which the job side uses)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from ..connectors.service_file import SERVICE_FILE, WRITE_TOKEN_HEADER, ServiceInfo, pid_alive, read

__all__ = ["SERVICE_FILE", "WRITE_TOKEN_HEADER", "ServiceInfo", "pid_alive", "publish", "read", "withdraw"]


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
