"""`serve`: the search service over one index, models loaded once."""

from __future__ import annotations

import typer

from .app import DEFAULT_STORE, app, console, fail, interrupted_exit_code, signals_as_ctrl_c
from .searching import CLI_ERRORS, parse_weights


@app.command()
def serve(
    store: str = typer.Option(DEFAULT_STORE, "--store", "-s", help="Store URL, e.g. qdrant-edge://./my-index."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs $SPARSEHYBRID_API_KEY."),
    port: int = typer.Option(8080, min=0, max=65535, help="Port to bind (0: any free port; the one bound is printed)."),
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
    workers: int | None = typer.Option(
        None, min=1, help="Searches answered at once (default: cores + 1, 2 to 8); each takes a batch."
    ),
    batch_window_ms: float = typer.Option(
        2.0, min=0, max=1000, help="How long a worker waits for concurrent searches to batch with (0: no wait)."
    ),
    max_batch_size: int = typer.Option(32, min=1, help="Most queries one batch encodes and searches together."),
    max_queue: int = typer.Option(256, min=1, help="Searches that may wait; beyond that: 429 with Retry-After."),
    request_timeout: float = typer.Option(30.0, min=0.001, help="Seconds a search may wait and run before 504."),
    qrels: str | None = typer.Option(
        None,
        help="BEIR qrels TSV the /ui page scores against (NDCG@10; its queries come from the folder's queries.jsonl).",
    ),
) -> None:
    """Serve searches over HTTP with warm models; index jobs on the same embedded store write through it."""
    from ..pipelines.runtime import exit_at_once
    from ..service.batching import BatchingSettings
    from ..service.core import default_workers
    from ..service.runner import bind, open_owned_store, run_service, start_service
    from ..service.settings import ServiceSettings
    from ..service.ui import Judgements

    sock = st = None
    try:
        judgements = Judgements.load(qrels) if qrels else None
        settings = ServiceSettings.from_env(host, port, max_top_k=max_top_k, cors_origins=cors_origins(cors_origin))
        settings.check()
        batching = BatchingSettings(
            workers=workers or default_workers(),
            window_s=batch_window_ms / 1000,
            max_batch=max_batch_size,
            max_queue=max_queue,
            timeout_s=request_timeout,
        )
        batching.check()
        default_weights = parse_weights(weights)
        sock = bind(host, port)
        with signals_as_ctrl_c():  # a stop while the models load closes the store it opened
            st = open_owned_store(store, wait_for_store, notify=say)
            with console.status("loading models"):
                service = start_service(
                    st,
                    reranker=reranker,
                    device=device,
                    fusion=fusion,
                    rrf_k=rrf_k,
                    weights=default_weights,
                    batching=batching,
                )
    except CLI_ERRORS as exc:
        if sock is not None:
            sock.close()
        fail(str(exc))
    except KeyboardInterrupt as exc:
        if st is not None:
            st.close()
        if sock is not None:
            sock.close()
        exit_at_once(interrupted_exit_code(exc))
    try:
        run_service(service, settings, log_level=log_level, notify=say, judgements=judgements, sock=sock)
    except SystemExit as exc:  # a signal, after uvicorn's graceful shutdown; all is closed by now, and
        exit_at_once(exc.code if isinstance(exc.code, int) else 1)  # the models' teardown takes seconds


def say(line: str) -> None:
    console.print(line, soft_wrap=True)


def cors_origins(origins: list[str]) -> list[str]:
    return [o.strip() for o in origins if o.strip()]
