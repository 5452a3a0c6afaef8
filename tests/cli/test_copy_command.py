"""`sparsehybrid copy` as a user runs it: one summary, one-line refusals, resumable."""

from __future__ import annotations

import dataclasses

from typer.testing import CliRunner

from sparsehybrid.cli import app
from sparsehybrid.connectors import open_store
from tests.connectors.conformance import SCHEMA, make_records

runner = CliRunner()


def build(path, schema=SCHEMA, n=30, prefix="doc"):
    with open_store(f"qdrant-edge://{path}") as store:
        store.ensure_schema(schema)
        store.upsert(make_records(n, prefix=prefix))


def test_copy_prints_progress_lines_and_a_verified_summary(tmp_path):
    build(tmp_path / "a")
    args = ["copy", str(tmp_path / "a"), f"qdrant-edge://{tmp_path / 'b'}", "--batch-size", "10", "--no-files"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == [
        "copied 10/30 points",
        "copied 20/30 points",
        "copied 30/30 points",
    ]
    assert "copied 30 points (0 already there)" in result.output
    assert "verified: 30 points, 30 sampled points equal, same top-10 for 5" in result.output
    with open_store(str(tmp_path / "b")) as b:
        assert b.count() == 30


def test_copy_through_parquet_and_a_second_run_skips_what_is_there(tmp_path):
    build(tmp_path / "a")
    file = tmp_path / "points.parquet"
    assert runner.invoke(app, ["copy", str(tmp_path / "a"), f"parquet://{file}"]).exit_code == 0
    first = runner.invoke(app, ["copy", f"parquet://{file}", str(tmp_path / "b")])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["copy", f"parquet://{file}", str(tmp_path / "b")])
    assert again.exit_code == 0 and "copied 0 points (30 already there)" in again.output
    assert "rankings not compared" in again.output


def test_an_incompatible_destination_is_one_line_and_exit_1(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b", dataclasses.replace(SCHEMA, sparse_model="other/sparse"), n=3, prefix="x")
    result = runner.invoke(app, ["copy", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "sparse_model 'other/sparse'" in result.output


def test_sigterm_stops_a_copy_cleanly_and_the_same_command_finishes_it(tmp_path, monkeypatch):
    import os
    import signal

    from sparsehybrid.connectors import transfer

    build(tmp_path / "a")
    real = transfer.copy_collection

    def terminated_after_two_batches(*args, on_progress, **kwargs):
        def progress(done, total):
            on_progress(done, total)
            if done == 20:
                os.kill(os.getpid(), signal.SIGTERM)

        return real(*args, on_progress=progress, **kwargs)

    monkeypatch.setattr(transfer, "copy_collection", terminated_after_two_batches)
    args = ["copy", str(tmp_path / "a"), str(tmp_path / "b"), "--batch-size", "10", "--no-files"]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 143 and "run the same command again to finish" in stopped.output  # 128 + SIGTERM
    with open_store(str(tmp_path / "b")) as partial:  # closed on the way out: reopens, writes kept
        assert partial.count() == 20
    monkeypatch.setattr(transfer, "copy_collection", real)
    finished = runner.invoke(app, args)
    assert finished.exit_code == 0 and "copied 10 points (20 already there)" in finished.output


def test_ctrl_c_stops_a_copy_started_with_sigint_ignored(tmp_path, monkeypatch):
    """A copy started in the background of a script inherits SIGINT ignored: it ran to the end."""
    import os
    import signal

    from sparsehybrid.connectors import transfer

    build(tmp_path / "a")
    real = transfer.copy_collection

    def interrupted_after_two_batches(*args, on_progress, **kwargs):
        def progress(done, total):
            on_progress(done, total)
            if done == 20:
                os.kill(os.getpid(), signal.SIGINT)

        return real(*args, on_progress=progress, **kwargs)

    monkeypatch.setattr(transfer, "copy_collection", interrupted_after_two_batches)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        args = ["copy", str(tmp_path / "a"), str(tmp_path / "b"), "--batch-size", "10", "--no-files"]
        stopped = runner.invoke(app, args)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the command gave back what it found
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.exit_code == 130 and "run the same command again to finish" in stopped.output
    with open_store(str(tmp_path / "b")) as partial:
        assert partial.count() == 20


def test_a_copy_into_a_new_embedded_store_copies_the_files_and_says_so(tmp_path):
    build(tmp_path / "a", n=40)
    result = runner.invoke(app, ["copy", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "copied 40 points (0 already there)" in result.output
    assert "copied the engine's files" in result.output
    assert "verified: 40 points, 32 sampled points equal, same top-10 for 5" in result.output
