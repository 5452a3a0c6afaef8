"""`serve`: the search service over one index, models loaded once."""

from __future__ import annotations

import typer

from .app import DEFAULT_STORE, app, console, fail
from .searching import CLI_ERRORS, parse_weights


@app.command()
def serve(
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s", help="Store URL, e.g. qdrant-edge://./my-index."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs $SPARSEHYBRID_API_KEY."),
    port: int = typer.Option(8080, min=1, max=65535),
    reranker: str | None = typer.Option(None, help="CrossEncoder id or path, for requests with rerank=true."),
    fusion: str | None = typer.Option(
        None,
        help="Default fusion: rrf, minmax (alias weighted), zscore or dbsf (default: the collection's tuned fusion, "
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
) -> None:
    """Serve searches over HTTP with warm models; index jobs on the same embedded store write through it."""
    from ..service.runner import open_owned_store, run_service, start_service
    from ..service.settings import ServiceSettings

    try:
        settings = ServiceSettings.from_env(host, port, max_top_k=max_top_k, cors_origins=cors_origins(cors_origin))
        settings.check()
        default_weights = parse_weights(weights)
        st = open_owned_store(store, wait_for_store, notify=say)
        with console.status("loading models"):
            service = start_service(
                st, reranker=reranker, device=device, fusion=fusion, rrf_k=rrf_k, weights=default_weights
            )
    except CLI_ERRORS as exc:
        fail(str(exc))
    run_service(service, settings, log_level=log_level, notify=say)


def say(line: str) -> None:
    console.print(line, soft_wrap=True)


def cors_origins(origins: list[str]) -> list[str]:
    return [o.strip() for o in origins if o.strip()]
