"""What `sparsehybrid index` shows: a progress bar on a terminal, one line per batch otherwise,
and none of Prefect's per-task lines or the model-loading bars unless --verbose."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import cli_env, index_command
from tests.support import cranfield_rows, write_jsonl

pytestmark = pytest.mark.slow


def _cmd(src, idx, model, *extra):
    return index_command(
        src, idx, "--sparse-model", model, "--dense-model", "none", "--max-length", "64", "--batch-size", "4", *extra
    )


def test_index_output_is_quiet_and_shows_progress_lines_when_not_a_terminal(
    tmp_path, cranfield, prefect_api, tiny_splade_dir
):
    src = write_jsonl(tmp_path / "c.jsonl", cranfield_rows(cranfield, 12))
    env = cli_env(prefect_api)
    env.pop("PREFECT_LOGGING_LEVEL", None)
    out = subprocess.run(
        _cmd(src, tmp_path / "idx", tiny_splade_dir), env=env, capture_output=True, text=True, timeout=300
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "12 documents: 12 to encode in 3 batches" in text
    assert [line.split(":")[0] for line in text.splitlines() if " written: " in line] == [
        "batch 1/3 written",
        "batch 2/3 written",
        "batch 3/3 written",
    ]
    assert "Finished in state" not in text and "Loading weights" not in text
    verbose = subprocess.run(
        _cmd(src, tmp_path / "idx2", tiny_splade_dir, "--verbose"), env=env, capture_output=True, text=True, timeout=300
    )
    assert verbose.returncode == 0 and "Finished in state" in verbose.stdout + verbose.stderr


def test_index_shows_a_progress_bar_on_a_terminal(tmp_path, cranfield, prefect_api, tiny_splade_dir):
    import pty

    src = write_jsonl(tmp_path / "c.jsonl", cranfield_rows(cranfield, 8))
    env = dict(os.environ, PREFECT_API_URL=prefect_api, COLUMNS="100", TERM="xterm")
    env.pop("PREFECT_LOGGING_LEVEL", None)
    main, secondary = pty.openpty()
    proc = subprocess.Popen(_cmd(src, tmp_path / "idx", tiny_splade_dir), env=env, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(120)
    os.close(main)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "encoding" in screen and "docs/s" in screen and "━" in screen  # Rich's bar
