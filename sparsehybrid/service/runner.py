"""The service's lifecycle over one store: open the store as its only owner, load the searcher,
publish the service file for index jobs, serve until stopped, then withdraw the file and close.

Library code, so that ``sparsehybrid serve`` is a thin driver and other programs can run the
same service; what the CLI prints arrives through ``notify`` callbacks.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..connectors import StoreLockedError, VectorStore, open_store
from ..connectors.registry import local_path
from ..search import searcher_for_store
from . import discovery
from .batching import BatchingSettings
from .core import SearchService
from .settings import ServiceSettings
from .ui import Judgements

Notify = Callable[[str], None]


def published_url(host: str, port: int) -> str:
    """Where local index jobs reach the service: loopback when it listens on every address."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


def open_owned_store(url: str, wait: float = 0.0, notify: Notify | None = None) -> VectorStore:
    """The store itself, never another service's: one service per embedded store. An index job
    that opened it directly (before the service ran) holds it until it ends: wait up to ``wait`` s."""
    path = local_path(url)
    if path is not None:
        other = discovery.read(path)
        if other is not None:
            raise ValueError(f"{url} is already served by {other.url} (pid {other.pid}); stop that service first")
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            return open_store(url)
        except StoreLockedError:
            if time.monotonic() >= deadline:
                raise
            if not told and notify is not None:
                notify(f"waiting up to {wait:g} s for the process writing to {url} to finish")
            told = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def start_service(
    store: VectorStore,
    *,
    reranker: str | None = None,
    device: str | None = None,
    fusion: str | None = None,
    rrf_k: int | None = None,
    weights: Mapping[str, float] | None = None,
    batching: BatchingSettings | None = None,
) -> SearchService:
    """The shared searcher over ``store`` (models loaded now). Without a fusion default given
    here, the service follows the collection's recorded fusion, including one recorded later.
    ``batching``: its worker threads, batch window, queue and deadline (defaults from the cores)."""
    return SearchService(
        store,
        lambda s: searcher_for_store(s, reranker=reranker, device=device, fusion=fusion, rrf_k=rrf_k, weights=weights),
        follow_recorded_fusion=fusion is None and rrf_k is None and weights is None,
        batching=batching,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port), bound before anything is printed
    or published, so the start-up line and the service file name the port actually bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def run_service(
    service: SearchService,
    settings: ServiceSettings,
    *,
    log_level: str = "info",
    notify: Notify | None = None,
    judgements: Judgements | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``service`` on ``sock`` (default: :func:`bind` to ``settings.host:port``) until
    SIGINT or SIGTERM (then ``SystemExit(130 or 143)``); an embedded store's
    service file is published while it runs. The service and the socket are closed on every
    path. ``judgements`` are what ``/ui`` scores against."""
    import uvicorn

    from .app import create_app

    store_url = service.store.url
    path = local_path(store_url)
    info = None
    try:
        sock = sock or bind(settings.host, settings.port)
        port = sock.getsockname()[1]
        url = published_url(settings.host, port)
        if path is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
            info = discovery.publish(path, url)
        api = create_app(service, settings, write_token=info.token if info else None, judgements=judgements)
        if notify is not None:
            state = "ready" if service.ready else "no collection yet: index into it, the service writes it"
            notify(f"serving {store_url} on {url} ({state}); docs at /docs")
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with the
        # handler it found: make that one an exit (130/143, the shell's codes), so the store is
        # closed and the service file withdrawn below (also when SIGINT was inherited ignored).
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _exit_on_signal)
        config = uvicorn.Config(api, host=settings.host, port=port, log_level=log_level)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if info is not None and path is not None:
            discovery.withdraw(path, info)
        service.close()
        if sock is not None:
            sock.close()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
