"""How an interactive index run lives and dies: its temporary Prefect API and its signals.

Prefect's own temporary API server is a child in the CLI's process group, so Ctrl-C in a
terminal killed the server while the run went on writing (and retried its events against the
dead server), and a ``kill -9`` of the CLI orphaned it. Here the temporary API runs in its own
session (a terminal's Ctrl-C does not reach it), is told by the kernel to die with its parent
(``PR_SET_PDEATHSIG``, Linux), and is stopped when the run ends. SIGINT and SIGTERM ask the run to
stop after the batch being written, so nothing is half-applied; a second signal ends it at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import httpx

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flush_run_logs() -> None:
    """Send the run's queued log lines while the API is still up: otherwise Prefect's log worker
    finds it gone at exit and prints "--- Error logging to API ---" after a good run (issue 23)."""
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):  # a log line lost is no reason to fail a finished job
        APILogWorker.drain_all(timeout=5)


@contextlib.contextmanager
def temporary_prefect_api(startup_timeout: float = 120.0) -> Iterator[str]:
    """A Prefect API for this process only, on 127.0.0.1; yields its URL and stops it afterwards.

    The same server Prefect starts for a run without ``PREFECT_API_URL`` (uvicorn over
    ``prefect.server.api.server:create_app``, no UI, no background services), started so that
    no signal to the CLI's process group and no death of the CLI leaves it running.
    """
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    port = _free_port()
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    env.pop("PREFECT_API_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(prefect.__module_path__.parent),
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the temporary Prefect API exited with code {proc.returncode} while starting")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the temporary Prefect API did not start in {startup_timeout:.0f} s")
            time.sleep(0.2)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
            _flush_run_logs()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class StopRequest:
    """SIGINT/SIGTERM as a request to stop between batches; a second signal exits at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def is_set(self) -> bool:
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            os._exit(128 + signum)  # asked twice: the user wants out now (writes are idempotent)
        self.signum = signum
        self.event.set()
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: stopping after the batch being written (send it again to stop at once)\n"
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM in this (main) thread for the duration of the block."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
