"""The temporary Prefect API holds its port from before it starts (issue 23, found by the soak).

It used to be given a free port *number*: between finding it and the server binding it, another
process could take the port, and the job then talked to that server (another job's temporary
API) until it went away: "All connection attempts failed". Now the port is bound and listening
in this process and handed to the server as a file descriptor, so nothing can take it between.
"""

from __future__ import annotations

import socket

import pytest

from sparsehybrid.pipelines import runtime


class Started(Exception):
    """Raised by the stand-in for Popen once it has looked at what the server would get."""


def test_the_api_port_is_listening_before_the_server_process_exists(monkeypatch):
    seen: dict = {}

    def fake_popen(cmd, **kwargs):
        fd = int(cmd[cmd.index("--fd") + 1])
        seen["passed"] = fd in kwargs.get("pass_fds", ())
        with socket.socket(fileno=socket.dup(fd)) as listener:
            port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # already accepting
            seen["port"] = port
        raise Started

    monkeypatch.setattr(runtime.subprocess, "Popen", fake_popen)
    with pytest.raises(Started), runtime.temporary_prefect_api():
        pass
    assert seen["passed"] and seen["port"]
    with pytest.raises(OSError):  # closed with the failed start: nothing of it is left listening
        socket.create_connection(("127.0.0.1", seen["port"]), timeout=2).close()
