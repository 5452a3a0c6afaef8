"""How fast `sparsehybrid index` stops on Ctrl-C in each phase of a run, and what it leaves behind.

    python benchmarks/signals.py --docs 200            # every phase, SIGINT to the process group
    python benchmarks/signals.py --phases api,models --signal TERM --resume

Each trial indexes the first N Cranfield documents into a fresh embedded store with its own
temporary Prefect API (a fresh PREFECT_HOME, so the run's state is read from its own database),
waits for the phase, sends the signal to the CLI's process group as a terminal's Ctrl-C does, and
prints phase → seconds from the signal to the exit, the exit code, the flow run's final state in
Prefect's database, and whether any process the CLI started outlived it. The target (issue 23):
under 2 s in every phase on a quiet machine, rc 130 (143 for SIGTERM), a terminal state.

Phases (the moment the signal is sent):
  start     0.3 s after the command starts (Python still importing)
  api       as soon as the temporary Prefect API process exists (it is starting)
  models    0.2 s after the flow logs "indexing ..." (a new collection: the encoders load)
  encode    0.2 s after the plan line (the first batch is being encoded)
  write     as the first "batch 1/N written" line appears (the next batches encode and write)
  sync      0.3 s after the plan of a --sync run that deletes most of a stored collection
  optimize  as the last "batch N/N written" line appears (flush, then the store's optimize)
  second    encode, then the other signal 0.1 s later (the second signal exits at once)
  serve     `sparsehybrid serve` over the indexed store, once it says it is serving
  copy      `sparsehybrid copy` of the indexed store into another, 5 points a batch, at 50 copied
With --resume each trial then re-runs the same command and checks it completes with every
document (no duplicate, none missing).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))
PHASES = ("start", "api", "models", "encode", "write", "sync", "optimize", "second", "serve", "copy")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), whatever session it moved to."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def flow_run_states(prefect_home: Path) -> list[str]:
    """The state name of every flow run in this trial's Prefect database."""
    db = prefect_home / "prefect.db"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return [row[0] for row in conn.execute("SELECT state_name FROM flow_run ORDER BY created")]


def stored_ids(store: Path) -> int:
    from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

    s = QdrantEdgeStore(store)
    try:
        return len(s.document_states()) if s.schema is not None else 0
    finally:
        s.close()


class Trial:
    def __init__(self, tmp: Path, rows: list[dict], args: argparse.Namespace):
        self.tmp, self.rows, self.args = tmp, rows, args
        self.src = tmp / "c.jsonl"
        self.store = tmp / "idx"
        self.home = tmp / "prefect"
        self.log = tmp / "out.log"
        self.env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        self.env.update(COLUMNS="200", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PREFECT_HOME=str(self.home))

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sparsehybrid.cli",
            "index",
            str(self.src),
            "--store",
            f"qdrant-edge://{self.store}",
            "--dense-model",
            self.args.dense,
            "--batch-size",
            str(self.args.batch_size),
            "--verbose",
            *extra,
        ]

    def write_source(self, rows: list[dict]) -> None:
        self.src.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(self, phase: str, signum: int) -> dict:
        extra: tuple[str, ...] = ()
        self.write_source(self.rows)
        if phase in ("sync", "serve", "copy"):  # a stored collection first
            subprocess.run(self.command(), env=self.env, capture_output=True, check=True, timeout=900)
        if phase == "sync":  # then a source without most of it
            self.write_source(self.rows[: len(self.rows) // 5])
            extra = ("--sync", "--allow-mass-delete", "--batch-size", "2")
        cmd = self.command(*extra)
        if phase == "serve":
            cmd = [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", f"qdrant-edge://{self.store}"]
            cmd += ["--port", "0"]
        elif phase == "copy":
            cmd = [sys.executable, "-m", "sparsehybrid.cli", "copy", f"qdrant-edge://{self.store}"]
            cmd += [f"qdrant-edge://{self.tmp / 'copy'}", "--batch-size", "5", "--no-files"]
        out = open(self.log, "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        seen: set[int] = set()
        sent_at = self.wait_for(phase, proc, seen)
        if sent_at is not None:
            seen |= descendants(proc.pid)
            os.killpg(proc.pid, signum)
            if phase == "second":
                time.sleep(0.1)
                os.killpg(proc.pid, signal.SIGTERM if signum == signal.SIGINT else signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        took = time.monotonic() - sent_at if sent_at is not None else float("nan")
        out.close()
        time.sleep(0.5)
        orphans = sorted(p for p in seen if alive(p))
        text = self.log.read_text(errors="replace")
        result = {
            "phase": phase,
            "seconds": took,
            "rc": proc.returncode,
            "states": flow_run_states(self.home),
            "orphans": orphans,
            "last_line": text.strip().splitlines()[-1] if text.strip() else "",
            "traceback": "Traceback" in text,
        }
        for pid in orphans:  # leave nothing behind, whatever the CLI did
            os.kill(pid, signal.SIGKILL)
        if self.args.resume and phase not in ("serve", "copy"):
            self.write_source(self.rows if phase != "sync" else self.rows[: len(self.rows) // 5])
            again = subprocess.run(self.command(*extra), env=self.env, capture_output=True, text=True, timeout=900)
            want = len(self.rows) if phase != "sync" else len(self.rows) // 5
            result["resumed"] = again.returncode == 0 and stored_ids(self.store) == want
        return result

    def wait_for(self, phase: str, proc: subprocess.Popen, seen: set[int]) -> float | None:
        """Block until ``phase`` (see the module docstring); the signal's time, or None if the run
        ended first."""
        started = time.monotonic()
        last_batch = f"batch {-(-len(self.rows) // self.args.batch_size)}/"
        marks = {
            "models": ("indexing ", 0.2),
            "encode": (" to encode in ", 0.2),
            "second": (" to encode in ", 0.2),
            "write": ("batch 1/", 0.0),
            "sync": (" to encode in ", 0.3),
            "optimize": (last_batch, 0.0),
            "serve": ("serving ", 0.0),
            "copy": ("copied 50/", 0.0),
        }
        while proc.poll() is None:
            if phase == "start":
                if time.monotonic() - started >= 0.3:
                    return time.monotonic()
            elif phase == "api":
                if any(b"uvicorn" in _cmdline(p) for p in descendants(proc.pid)):
                    return time.monotonic()
            else:
                mark, delay = marks[phase]
                if mark in self.log.read_text(errors="replace"):
                    time.sleep(delay)
                    return time.monotonic()
            seen |= descendants(proc.pid)
            time.sleep(0.02)
        return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--dense", default="all-MiniLM-L6-v2", help="dense model (default: the bundled MiniLM; 'none' for sparse only)"
    )
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--signal", default="INT", choices=["INT", "TERM"])
    ap.add_argument("--resume", action="store_true", help="re-run each trial's command and check every document")
    ap.add_argument("--logs", type=Path, help="keep each trial's output here, as PHASE.log")
    args = ap.parse_args()
    # Started in the background (`&`), this process inherits SIGINT ignored, and so would every
    # command it starts (Python leaves an ignored SIGINT ignored): restore the default first.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signum = signal.SIGINT if args.signal == "INT" else signal.SIGTERM
    with open(SHARED / "datasets" / "cranfield" / "corpus.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(args.docs)]
    print(
        f"{args.docs} Cranfield documents, batch {args.batch_size}, dense {args.dense}, SIG{args.signal}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    header = f"{'phase':9} {'s to exit':>9} {'rc':>4}  {'Prefect state':16} {'orphans':8} {'resumed':8} last line"
    print(header)
    print("-" * len(header))
    for phase in args.phases.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            r = Trial(Path(tmp), rows, args).run(phase, signum)
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                (args.logs / f"{phase}.log").write_bytes((Path(tmp) / "out.log").read_bytes())
        states = ",".join(r["states"]) or "-"
        resumed = {True: "yes", False: "NO"}.get(r.get("resumed"), "-")
        tb = " [traceback]" if r["traceback"] else ""
        print(
            f"{phase:9} {r['seconds']:9.2f} {r['rc']:>4}  {states:16} {len(r['orphans']):<8} {resumed:8} "
            f"{r['last_line'][:70]}{tb}",
            flush=True,
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
