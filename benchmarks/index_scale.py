"""An indexing run at scale: ≥ 100k real passages, in-process and through Prefect, interrupted and resumed.

The corpus is a BEIR collection's passages (MS MARCO by default) cycled with new ids past its end
(``index_memory.write_corpus``). Per path:

* ``inprocess``: the library's :class:`~sparsehybrid.ingestion.indexing.Indexer` in a child
  process (what a script embedding sparsehybrid does);
* ``prefect``: ``sparsehybrid index`` (the Prefect flow, with its temporary API), as a user runs it.

Each path is interrupted with SIGINT once ``--interrupt-at`` of the documents are written, then
run again with the same arguments, which must resume: skip what was written and finish, leaving
exactly one point per document. The child's RSS is sampled every half second. Printed per path:
wall time and docs/s of both runs, docs/s per step of the resumed run (chunk, sparse and dense
encoding, write: work seconds summed over batches, so they show which step bounds the run), RSS
at 10/50/90 % of the resumed run and its peak, the final count, and the load average.

    python benchmarks/index_scale.py --docs 100000 --dense none
    python benchmarks/index_scale.py --docs 2000 --paths prefect      # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_memory import REPO, write_corpus

IN_PROCESS = r"""
import json, signal, sys
# A process started in the background of a script inherits SIGINT ignored; a user's script
# stopped with Ctrl-C gets KeyboardInterrupt, so this one must too.
signal.signal(signal.SIGINT, signal.default_int_handler)
from sparsehybrid.connectors import open_store
from sparsehybrid.encoders.dense import DenseEncoder
from sparsehybrid.encoders.sparse import SparseEncoder
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.ingestion.sources import open_source

corpus, store_url, dense_model = sys.argv[1], sys.argv[2], sys.argv[3]
store = open_store(store_url)
try:
    # queries=False: documents only, as `sparsehybrid index` builds them (no query-path ONNX graph)
    sparse = SparseEncoder(queries=False)
    dense = None if dense_model == "none" else DenseEncoder(dense_model, queries=False)
    indexer = Indexer(store, sparse, dense, batch_size=64)
    def progress(stats):
        print(f"batch {stats.batches_done}/{stats.batches} written", flush=True)
    stats = indexer.index(open_source(corpus), on_batch=progress)
    store.optimize()
    print("SUMMARY " + json.dumps(stats.as_dict()), flush=True)
finally:
    store.close()
"""


def rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def run(command: list[str], interrupt_at: float | None) -> dict:
    """Run ``command``; SIGINT it once that share of its batches is written. Returns the outcome:
    rc, seconds, batches seen, RSS samples [(fraction done, MiB)], the last summary line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    done = {"batches": 0, "total": 0, "interrupted": False}
    samples: list[tuple[float, float]] = []
    lines: list[str] = []

    def sample() -> None:
        while proc.poll() is None:
            mem = rss_mib(proc.pid)
            if mem is not None and done["total"]:
                samples.append((done["batches"] / done["total"], mem))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        match = re.search(r"batch (\d+)/(\d+) written", line)
        if match:
            done["batches"], done["total"] = int(match.group(1)), int(match.group(2))
            if interrupt_at is not None and not done["interrupted"] and done["batches"] >= interrupt_at * done["total"]:
                done["interrupted"] = True
                proc.send_signal(signal.SIGINT)
    rc = proc.wait()
    sampler.join()
    return {"rc": rc, "seconds": time.perf_counter() - t0, **done, "samples": samples, "lines": lines}


def at(samples: list[tuple[float, float]], fraction: float) -> float:
    later = [mem for done, mem in samples if done >= fraction]
    return later[0] if later else float("nan")


def unchanged_of(outcome: dict) -> str:
    """How many documents the run skipped as already stored (summary JSON or the CLI's plan line)."""
    for line in outcome["lines"]:
        if line.startswith("SUMMARY "):
            return str(json.loads(line[len("SUMMARY ") :])["unchanged"])
        if match := re.search(r"(\d+) unchanged", line):
            return match.group(1)
    return "?"


def steps_of(outcome: dict) -> dict[str, float]:
    """docs/s per step from the run's output (the in-process summary JSON or the CLI's line)."""
    for line in reversed(outcome["lines"]):
        if line.startswith("SUMMARY "):
            return json.loads(line[len("SUMMARY ") :])["docs_per_second_by_step"]
        if line.startswith("docs/s by step:"):
            return {
                k: float(v.replace(",", "")) for k, v in re.findall(r"(\w+) ([\d,.]+)", line[len("docs/s by step:") :])
            }
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--paths", nargs="+", default=["inprocess", "prefect"], choices=["inprocess", "prefect"])
    ap.add_argument("--dense", default="none", help="dense model, or none (default: sparse + BM25 only)")
    ap.add_argument(
        "--storage",
        default="disk",
        choices=["ram", "disk"],
        help="the embedded store's ?storage= (disk: memory-mapped, built in bounded steps, flat RSS)",
    )
    ap.add_argument("--interrupt-at", type=float, default=0.3, help="share of batches written before SIGINT")
    ap.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "msmarco-5k")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="index-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / f"corpus-{args.docs}.jsonl"
    write_corpus(args.dataset / "corpus.jsonl", args.docs, corpus)
    print(
        f"{args.docs:,} passages of {args.dataset.name}, dense={args.dense}, storage={args.storage}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for path in args.paths:
        store = root / f"store-{path}"
        shutil.rmtree(store, ignore_errors=True)
        url = f"qdrant-edge://{store}?storage={args.storage}"
        if path == "inprocess":
            command = [sys.executable, "-c", IN_PROCESS, str(corpus), url, args.dense]
        else:
            command = [sys.executable, "-m", "sparsehybrid.cli", "index", str(corpus), "--store", url]
            command += ["--dense-model", args.dense]
        first = run(command, args.interrupt_at)
        second = run(command, None)
        from sparsehybrid.connectors import open_store

        with open_store(f"qdrant-edge://{store}") as opened:
            states = opened.document_states()
        print(f"\n## {path}  (load {os.getloadavg()[0]:.1f})")
        print(
            f"interrupted run: rc {first['rc']} after {first['batches']}/{first['total']} batches, "
            f"{first['seconds']:.0f} s ({first['batches'] * 64 / max(first['seconds'], 1e-9):.1f} docs/s incl. start-up)"
        )
        resumed = second["lines"][-12:]
        unchanged = unchanged_of(second)
        print(
            f"resumed run: rc {second['rc']}, {second['seconds']:.0f} s, {second['total']} batches encoded, "
            f"{unchanged} documents skipped as already written"
        )
        steps = steps_of(second)
        print("docs/s by step (resumed run): " + ", ".join(f"{k} {v:,.1f}" for k, v in steps.items()))
        samples = second["samples"]
        peak = max((mem for _, mem in samples), default=float("nan"))
        print(
            f"RSS MiB at 10/50/90 % of the resumed run: {at(samples, 0.1):.0f} / {at(samples, 0.5):.0f} / "
            f"{at(samples, 0.9):.0f}; peak {peak:.0f}"
        )
        ok = len(states) == args.docs and first["rc"] != 0 and first["interrupted"] and second["rc"] == 0
        print(f"documents stored: {len(states):,} of {args.docs:,} -> {'OK' if ok else 'FAILED'}")
        if not ok:
            print("\n".join(resumed))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
