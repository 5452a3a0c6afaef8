"""Texts per forward pass on CPU (``encoders.models.CPU_BATCH_SIZE``): docs/s and memory per call.

Both default encoders together, as an index job runs them: documents chunked and encoded 64 to a
call by :class:`~sparsehybrid.ingestion.encoding.BatchEncoder`, freed memory handed back after
each call. Two corpora: MS MARCO passages as they are, and "long" documents of four passages
each. Every (corpus, batch size) runs in a fresh subprocess, in turn, ``--rounds`` times, and the
best pass counts (the machine is shared; the load average is printed). Memory is how far the
process's peak rose above its resident set just before the timed pass (``VmHWM`` reset after
loading and a warm-up call): what one call's activations add on top of the loaded models.

    python benchmarks/encode_batch_size.py --sizes 4 8 16 --docs 1280 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import reset_peak_rss, status_kib

REPO = Path(__file__).resolve().parents[1]
PER_CALL = 64
#: Passages joined into one document of the "long" corpus.
LONG_JOIN = 4


def worker(dataset: Path, docs: int, long: bool, batch_size: int) -> dict[str, float]:
    """One timed pass in this process; returns docs/s and the memory the calls added."""
    from sparsehybrid.encoders.dense import DenseEncoder
    from sparsehybrid.encoders.models import DEFAULT_DENSE_MODEL, DEFAULT_SPARSE_MODEL
    from sparsehybrid.encoders.sparse import SparseEncoder
    from sparsehybrid.heap import bound_malloc_arenas, release_free_memory
    from sparsehybrid.ingestion.encoding import BatchEncoder
    from sparsehybrid.types import Document

    bound_malloc_arenas()
    rows = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) >= docs * (LONG_JOIN if long else 1):
                break
    if long:
        rows = [
            {"_id": rows[i]["_id"], "text": " ".join(r["text"] for r in rows[i : i + LONG_JOIN])}
            for i in range(0, len(rows), LONG_JOIN)
        ]
    documents = [Document(id=str(r["_id"]), text=r["text"], title=r.get("title") or "") for r in rows]
    encoder = BatchEncoder(
        SparseEncoder(DEFAULT_SPARSE_MODEL, device="cpu", batch_size=batch_size, queries=False),
        DenseEncoder(DEFAULT_DENSE_MODEL, device="cpu", batch_size=batch_size, queries=False),
    )
    encoder.encode_documents(documents[:PER_CALL])  # warm-up: thread pools, first allocations
    release_free_memory()
    if not reset_peak_rss():
        raise SystemExit("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")
    before = status_kib("VmRSS") or 0
    t = time.perf_counter()
    for start in range(0, len(documents), PER_CALL):
        encoder.encode_documents(documents[start : start + PER_CALL])
        release_free_memory()
    seconds = time.perf_counter() - t
    return {"docs_per_s": len(documents) / seconds, "added_mib": ((status_kib("VmHWM") or 0) - before) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--docs", type=int, default=1280, help="documents per corpus")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "msmarco-5k")
    ap.add_argument("--worker", nargs=3, metavar=("DOCS", "LONG", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        docs, long, batch = (int(v) for v in args.worker)
        print(json.dumps(worker(args.dataset, docs, bool(long), batch)))
        return
    from sparsehybrid.encoders.models import CPU_BATCH_SIZE

    best: dict[tuple[str, int], dict[str, float]] = {}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for corpus, long in (("passages", 0), (f"{LONG_JOIN} passages a document", 1)):
            for size in args.sizes:
                command = [sys.executable, __file__, "--dataset", str(args.dataset), "--worker"]
                command += [str(args.docs // (LONG_JOIN if long else 1)), str(long), str(size)]
                env = {**os.environ, "HF_HUB_OFFLINE": "1"}
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"batch size {size} failed: {done.stderr[-2000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                key = (corpus, size)
                if key not in best or result["docs_per_s"] > best[key]["docs_per_s"]:
                    best[key] = result
                load.append(os.getloadavg()[0])
    print(f"both default encoders on CPU, {PER_CALL} documents a call; load {min(load):.1f}-{max(load):.1f}")
    print(f"| corpus | texts per pass | docs/s | vs {CPU_BATCH_SIZE} (default) | MiB a call adds | vs default |")
    print("|---|---:|---:|---:|---:|---:|")
    for (corpus, size), r in best.items():
        base = best.get((corpus, CPU_BATCH_SIZE), r)
        print(
            f"| {corpus} | {size} | {r['docs_per_s']:.1f} | {r['docs_per_s'] / base['docs_per_s']:.2f}x | "
            f"{r['added_mib']:.0f} | {r['added_mib'] / max(base['added_mib'], 1):.2f}x |"
        )


if __name__ == "__main__":
    main()
