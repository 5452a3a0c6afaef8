"""The ``sparsehybrid`` console script's entry point.

Why a module of its own: importing the CLI (Typer, Rich, Prefect's settings, the command modules)
takes a second or more, and a Ctrl-C in that window used to end in a ``KeyboardInterrupt``
traceback. Here, before anything heavy is imported, SIGINT and SIGTERM end the process at once
with 130/143 and one line (nothing has started that needs closing); once the CLI is imported the
handlers in place before are restored and each command handles signals itself.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _stopped_while_starting(signum: int, frame: Any) -> None:
    sys.stderr.write(f"{signal.Signals(signum).name}: stopped while starting; nothing was done\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def main() -> Any:
    """Run the CLI, with signals during its import ending the process in one line."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    # A process inherits its parent thread's blocked signals: started from a thread that blocks
    # them (seen under a test runner's worker), Ctrl-C would never reach any handler of ours.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    previous = {s: signal.signal(s, _stopped_while_starting) for s in stop_signals}
    from .cli import app

    for signum, handler in previous.items():
        signal.signal(signum, handler)
    return app()
