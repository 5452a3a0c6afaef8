"""Ctrl-C while the CLI is still importing ends it with 130 and one line (issue 23): the import
takes a second or more, and a signal then used to print a KeyboardInterrupt traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

# Runs the console script's entry point with the CLI's import held up (a slow machine, made
# deterministic): the stand-in for ``sparsehybrid.cli`` says it started, then waits.
SLOW_IMPORT = """
import sys, time, types, importlib.abc, importlib.machinery

class Slow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "sparsehybrid.cli":
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        print("importing", flush=True)
        time.sleep(60)

sys.meta_path.insert(0, Slow())
from sparsehybrid._entry import main
main()
"""


def _block_stop_signals() -> None:  # runs in the child between fork and exec
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.parametrize("blocked", [False, True], ids=["", "started_with_them_blocked"])
@pytest.mark.parametrize(("signum", "rc"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_cli_imports_is_one_line_and_its_exit_code(signum, rc, blocked):
    """Also when the process was started with the signals blocked (it inherits its parent
    thread's mask): before, it then ignored Ctrl-C until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_IMPORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_block_stop_signals if blocked else None,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "importing"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == rc
    assert err.strip() == f"{signal.Signals(signum).name}: stopped while starting; nothing was done"


def test_the_console_script_runs_the_cli_through_the_entry_point():
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sparsehybrid"] == "sparsehybrid._entry:main"
    done = subprocess.run(
        [sys.executable, "-c", "from sparsehybrid._entry import main; main()", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Usage" in done.stdout
