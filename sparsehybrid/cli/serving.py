"""`serve`: the search service over one index, models loaded once."""

from __future__ import annotations

import signal

import typer

from .app import DEFAULT_STORE, app, console, fail
from .searching import CLI_ERRORS, parse_weights


def published_url(host: str, port: int) -> str:
    """Where local index jobs reach the service: loopback when it listens on every address."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


@app.command()
def serve(
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s", help="Store URL, e.g. qdrant-edge://./my-index."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs $SPARSEHYBRID_API_KEY."),
    port: int = typer.Option(8080, min=1, max=65535),
    reranker: str | None = typer.Option(None, help="CrossEncoder id or path, for requests with rerank=true."),
    fusion: str | None = typer.Option(
        None,
        help="Default fusion: rrf, weighted (min-max), zscore or dbsf (default: the collection's tuned fusion, "
        "else rrf; requests may override).",
    ),
    rrf_k: int | None = typer.Option(None, min=0, help="Default RRF k (default: the collection's, else 60)."),
    weights: str | None = typer.Option(None, help="Default per-retriever weights, e.g. sparse=1,dense=2,bm25=0.5."),
    max_top_k: int = typer.Option(1000, min=1, help="Largest top_k a request may ask for."),
    cors_origin: list[str] = typer.Option(
        [], help="Allow browser calls from this origin (repeatable; none by default)."
    ),
    device: str | None = typer.Option(None),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    wait_for_store: float = typer.Option(
        0.0, min=0, help="Seconds to wait for an index job that holds the store (started before the service)."
    ),
    qrels: str | None = typer.Option(
        None,
        help="BEIR qrels TSV the /ui page scores against (NDCG@10; its queries come from the folder's queries.jsonl).",
    ),
) -> None:
    """Serve searches over HTTP with warm models; index jobs on the same embedded store write through it."""
    import uvicorn

    from ..connectors.registry import local_path
    from ..search import searcher_for_store
    from ..service import discovery
    from ..service.app import create_app
    from ..service.core import SearchService
    from ..service.settings import ServiceSettings
    from ..service.ui import Judgements

    try:
        judgements = Judgements.load(qrels) if qrels else None
        settings = ServiceSettings.from_env(host, port, max_top_k=max_top_k, cors_origins=cors_origins(cors_origin))
        settings.check()
        default_weights = parse_weights(weights)
        st = open_owned_store(store, local_path(store), wait_for_store)
        with console.status("loading models"):
            service = SearchService(
                st,
                lambda s: searcher_for_store(
                    s, reranker=reranker, device=device, fusion=fusion, rrf_k=rrf_k, weights=default_weights
                ),
                follow_recorded_fusion=fusion is None and rrf_k is None and default_weights is None,
            )
    except CLI_ERRORS as exc:
        fail(str(exc))
    path = local_path(store)
    info = None
    if path is not None:
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        info = discovery.publish(path, published_url(host, port))
    try:
        api = create_app(service, settings, write_token=info.token if info else None, judgements=judgements)
        state = "ready" if service.ready else "no collection yet: index into it, the service writes it"
        console.print(f"serving {st.url} on {published_url(host, port)} ({state}); docs at /docs", soft_wrap=True)
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it
        # found: make that one an exit, so the store is closed and the service file withdrawn below.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.run(api, host=host, port=port, log_level=log_level)
    finally:
        if info is not None and path is not None:
            discovery.withdraw(path, info)
        service.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cors_origins(origins: list[str]) -> list[str]:
    return [o.strip() for o in origins if o.strip()]


def open_owned_store(url: str, path: str | None, wait: float = 0.0):
    """The store itself, never another service's proxy: one service per embedded store. An index
    job that opened it directly (before the service ran) holds it until it ends: wait up to ``wait`` s."""
    import time

    from ..connectors import StoreLockedError, open_store
    from ..service import discovery

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
            if not told:
                console.print(f"waiting up to {wait:g} s for the process writing to {url} to finish", soft_wrap=True)
                told = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
