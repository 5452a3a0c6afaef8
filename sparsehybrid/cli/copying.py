"""`copy`: move a collection between stores (or to/from a Parquet file) without re-encoding."""

from __future__ import annotations

import time

import typer

from .app import app, console, fail, interrupted_exit_code, progress_bar, signals_as_ctrl_c


class CopyProgress:
    """A Rich bar on a terminal, one plain line per batch otherwise (logs keep a record)."""

    def __init__(self) -> None:
        self.bar = progress_bar() if console.is_terminal else None
        self.task = self.bar.add_task("copying", total=None, rate="") if self.bar is not None else None
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        rate = f"{done / max(time.perf_counter() - self.t0, 1e-9):.0f} points/s"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total, rate=rate)
        else:
            console.print(f"copied {done}/{total} points ({rate})", soft_wrap=True)

    def __enter__(self) -> CopyProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def copy(
    source: str = typer.Argument(..., help="Store URL to read (or parquet:///path/points.parquet)."),
    destination: str = typer.Argument(..., help="Store URL to write (or parquet:///path/points.parquet)."),
    batch_size: int = typer.Option(1000, min=1, help="Points read and written per batch."),
    sample: int = typer.Option(32, min=0, help="Points read back from the destination and compared."),
    optimize: bool = typer.Option(True, help="Build the destination's indexes after loading (embedded store)."),
    files: bool = typer.Option(
        True,
        help="Into a new embedded store of the same ?storage= (or none stated): copy the engine's files, "
        "indexes included, at the disk's speed. --no-files copies point by point.",
    ),
) -> None:
    """Copy a collection (vectors, payloads, schema, recorded fusion) between stores, then verify it.

    Re-running an interrupted copy finishes it without duplicates.
    """
    from ..connectors import StoreError
    from ..connectors.transfer import copy_collection

    try:  # SIGTERM stops a copy as Ctrl-C does: the stores are closed (flushed) on the way out
        with signals_as_ctrl_c(), CopyProgress() as progress:
            report = copy_collection(
                source,
                destination,
                batch_size=batch_size,
                sample=sample,
                optimize=optimize,
                files=files,
                on_progress=progress,
            )
    except (StoreError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:
        console.print(
            "[bold red]interrupted:[/] run the same command again to finish (batches already written are kept; "
            "a copy of files starts over)",
            soft_wrap=True,
        )
        raise typer.Exit(code=interrupted_exit_code(exc)) from None
    console.print(
        f"copied {report.copied} points ({report.skipped} already there) from {report.source} to "
        f"{report.destination} in {report.seconds:.1f} s ({report.points_per_second:.0f} points/s)"
        + (f", optimized in {report.optimize_seconds:.1f} s" if report.optimize_seconds else ""),
        soft_wrap=True,
    )
    for note in report.notes:
        if not note.startswith("rankings"):
            console.print(note, soft_wrap=True)
    rankings = (
        f", same top-10 for {report.queries_checked} sample documents' queries"
        if report.queries_checked is not None
        else " (rankings not compared: another engine)"
    )
    console.print(
        f"verified: {report.destination_count} points, {report.vectors_checked} sampled points equal{rankings}",
        soft_wrap=True,
    )
