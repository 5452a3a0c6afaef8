"""The Typer app and the console helpers every command shares."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

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
    if not verbose_requested():
        quiet_third_parties()


def verbose_requested() -> bool:
    """``--verbose``/``-v`` anywhere on the command line (the callback runs before the command's
    own options are parsed)."""
    return any(arg in ("--verbose", "-v") for arg in sys.argv[1:])


#: Client libraries that log every failed attempt with its traceback: our own one-line error
#: (after the retries) says it once (issue 23).
NOISY_LOGGERS = ("opensearch", "elasticsearch", "elastic_transport", "urllib3", "httpx", "qdrant_client")


def quiet_third_parties() -> None:
    """Failures are one line unless verbose: client libraries' per-attempt tracebacks, their
    warnings (a closed Qdrant's version check) and model-loading bars off a terminal are dropped."""
    warnings.simplefilter("ignore")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")


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
    # Indented continuation lines (a config's list of problems) join the line; any other newline
    # is a value's own (a URL with a newline) and is shown escaped.
    one_line = re.sub(r"\n[ \t]+", "; ", re.sub(r":\n[ \t]+", ": ", message))
    one_line = one_line.replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"[bold red]error:[/] {one_line}")
    raise typer.Exit(code=1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopping a command the way Ctrl-C does, with the shell's code for it (143, not 130)."""


def _raise_terminated(signum: int, frame: Any) -> NoReturn:
    raise Terminated


@contextlib.contextmanager
def signals_as_ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated` (one) for the block: the
    command closes what it opened on the way out instead of dying with it half-open. SIGINT is
    set too because a command started in the background of a script inherits it ignored."""
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupted_exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
