"""The Typer app and the console helpers every command shares."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..encoders.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL, NONE_WORDS

app = typer.Typer(help="Learned-sparse + dense hybrid search.", no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors stay on one line: paths stay copyable

DEFAULT_STORE = "qdrant-edge://./my-index"
__all__ = ["DEFAULT_DENSE_MODEL", "DEFAULT_SPARSE_MODEL", "DEFAULT_STORE", "app", "console", "err_console", "fail"]


@app.callback()
def _configure_process() -> None:
    """Process-wide settings for a CLI run, set here rather than at import so that importing
    ``sparsehybrid.cli`` from a program changes nothing in that program's environment."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The temporary local Prefect API our commands start has no reason to phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def model_or_none(name: str | None) -> str | None:
    return None if name is None or name.lower() in NONE_WORDS else name


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 1 (no traceback: the message names what to fix)."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=1)
