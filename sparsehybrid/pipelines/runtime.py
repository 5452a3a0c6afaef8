"""How an interactive index run lives and dies: its temporary Prefect API and its signals.

Prefect's own temporary API server is a child in the CLI's process group, so Ctrl-C in a
terminal killed the server while the run went on writing (and retried its events against the
dead server), and a ``kill -9`` of the CLI orphaned it. Here the temporary API runs in its own
session (a terminal's Ctrl-C does not reach it), is told by the kernel to die with its parent
(``PR_SET_PDEATHSIG``, Linux), and is stopped when the run ends. SIGINT and SIGTERM ask the run to
stop after the batch being written, so nothing is half-applied; a second signal ends it at once.

A stop is prompt in every phase (issue 23): each wait of the run's main thread (the API starting,
models loading, a batch encoding, the store optimizing) watches the request, work that cannot be
interrupted mid-call is abandoned on its thread, the flow run is recorded "Cancelled", and the
process ends with :meth:`StopRequest.exit` once the store is closed, without waiting for that work.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import IO, NoReturn
from uuid import UUID

import httpx

PR_SET_PDEATHSIG = 1
#: What a run stopped before its flow began says (nothing written, nothing to clean up).
STOPPED_BEFORE_START = "stopped before the run started, nothing written: run the same command again to resume"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _listening_socket() -> socket.socket:
    """A socket listening on a free loopback port, for the API process to inherit (uvicorn's
    ``--fd``). Why not a free port number handed over: between finding it and the server binding
    it, another process could take it, and the health check would then find *that* server (e.g.
    another job's temporary API) and use it until it went away with its job: "All connection
    attempts failed" in the chaos soak with two jobs at once (issue 23)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _flush_run_logs(timeout: float) -> None:
    """Send the run's queued log lines while the API is still up: otherwise Prefect's log worker
    finds it gone at exit and prints "--- Error logging to API ---" after a good run (issue 23),
    and retries for more than a minute before the process can end."""
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):  # a log line lost is no reason to fail a finished job
        APILogWorker.drain_all(timeout=timeout)


@contextlib.contextmanager
def temporary_prefect_api(startup_timeout: float = 120.0, stop: StopRequest | None = None) -> Iterator[str]:
    """A Prefect API for this process only, on 127.0.0.1; yields its URL and stops it afterwards.

    The same server Prefect starts for a run without ``PREFECT_API_URL`` (uvicorn over
    ``prefect.server.api.server:create_app``, no UI, no background services), started so that
    no signal to the CLI's process group and no death of the CLI leaves it running. A ``stop``
    requested while it starts ends the wait (:class:`IndexInterrupted`: nothing was written).
    Its output goes to a file, shown only when it fails to start: a server stopped while it
    still records the run's events prints their cancelled tracebacks.
    """
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    listener = _listening_socket()
    port = int(listener.getsockname()[1])
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
        "--fd",
        str(listener.fileno()),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    url = f"http://127.0.0.1:{port}/api"
    with tempfile.TemporaryFile() as output:
        with listener:  # the server holds the port from here on; this process needs no copy
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                pass_fds=(listener.fileno(),),
            )
        stopping = stop.is_set if stop is not None else (lambda: False)
        try:
            _wait_until_up(proc, url, output, startup_timeout, stop)
            with temporary_settings(updates={PREFECT_API_URL: url}):
                try:
                    yield url
                finally:  # on every path: log lines left queued are retried against the dead API at exit
                    _flush_run_logs(timeout=0.5 if stopping() else 5)
        finally:
            _stop_process(proc, grace=1.0 if stopping() else 10)


def _wait_until_up(
    proc: subprocess.Popen, url: str, output: IO[bytes], startup_timeout: float, stop: StopRequest | None
) -> None:
    from ..ingestion.indexing import IndexInterrupted

    deadline = time.monotonic() + startup_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the temporary Prefect API exited with code {proc.returncode} while starting: {_last_line(output)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the temporary Prefect API did not start in {startup_timeout:.0f} s")
        if stop is None:
            time.sleep(0.2)
        elif stop.wait(0.2):
            raise IndexInterrupted(STOPPED_BEFORE_START)


def _stop_process(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (uvicorn finishes its start-up before it
    honours SIGTERM, and a stopping run has no time for that)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(output: IO[bytes]) -> str:
    output.seek(0)
    lines = output.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def exit_at_once(code: int) -> NoReturn:
    """End the process with ``code`` once a stopped command has closed what it opened: without
    waiting for abandoned threads, nor for the interpreter's teardown of loaded models (2-3 s on
    this machine after a served store was closed)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class StopRequest:
    """SIGINT/SIGTERM as a request to stop between batches; a second signal exits at once.

    The run tells it which flow run it is (:meth:`attach`), so that a second signal, which gives
    the engine no chance to finish the run, still leaves it "Cancelled" in Prefect's database
    rather than "Running" forever.
    """

    #: How long a second signal waits for the Prefect API to record the cancellation.
    CANCEL_BUDGET_S = 1.5

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.flow_run_id: UUID | None = None
        self.api_url: str | None = None
        self.api_key: str | None = None

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking as soon as a stop is requested; True if one was."""
        return self.event.wait(timeout)

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)

    def attach(self, flow_run_id: UUID | None, api_url: str | None = None, api_key: str | None = None) -> None:
        """The flow run in progress (None once it has ended), and the API that holds it."""
        self.flow_run_id, self.api_url, self.api_key = flow_run_id, api_url, api_key

    def exit(self) -> NoReturn:
        """End the process with :attr:`exit_code` now that the run is stopped and the store closed,
        without waiting for threads still busy with abandoned work (a model loading, a batch being
        encoded: neither can be interrupted mid-call, and nothing will read their result)."""
        exit_at_once(self.exit_code)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():  # asked twice: the user wants out now (writes are idempotent)
            recorded = self._cancel_run(f"stopped at once by a second {signal.Signals(signum).name}")
            sys.stderr.write(
                f"\n{signal.Signals(signum).name}: stopped at once{recorded}; run the same command again to resume\n"
            )
            exit_at_once(128 + signum)
        self.signum = signum
        self.event.set()
        sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping (send it again to stop at once)\n")

    def _cancel_run(self, message: str) -> str:
        """Record the attached flow run as Cancelled, within :attr:`CANCEL_BUDGET_S`; says what it did."""
        run_id, api_url, api_key = self.flow_run_id, self.api_url, self.api_key
        if run_id is None or api_url is None:
            return ""
        done = threading.Event()

        def cancel() -> None:
            from prefect.client.orchestration import SyncPrefectClient
            from prefect.states import Cancelled

            settings = {"timeout": 1.0}
            with (
                contextlib.suppress(Exception),
                SyncPrefectClient(api_url, api_key=api_key, httpx_settings=settings) as client,
            ):
                client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
                done.set()

        threading.Thread(target=cancel, name="cancel-flow-run", daemon=True).start()
        return " (flow run cancelled)" if done.wait(self.CANCEL_BUDGET_S) else ""

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM in this (main) thread for the duration of the block."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
