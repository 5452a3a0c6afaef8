"""Peak memory of ``sparsehybrid index`` as the corpus grows: is it flat, and under 1.5 GB?

Runs the command as a user does, under ``/usr/bin/time -v`` (peak RSS of the largest process),
on the first N documents of a BEIR corpus (MS MARCO passages by default), cycled with new ids
(``ID~2``, ``ID~3``, ...) past its end, both default encoders unless told otherwise. Prints peak
RSS, docs/s and the ratio to the smallest size, with the load average (the machine is shared).

    python benchmarks/index_memory.py --docs 500 5000
    python benchmarks/index_memory.py --docs 500 50000 --dir /tmp/index-memory
    python benchmarks/index_memory.py --docs 50000 --step 30000   # another bounded step
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_corpus(source: Path, n: int, out: Path) -> None:
    """The first ``n`` documents of ``source``, cycled with fresh ids past its end."""
    rows = [json.loads(line) for line in source.open(encoding="utf-8") if line.strip()]
    with out.open("w", encoding="utf-8") as fh:
        for i, row in enumerate(itertools.islice(itertools.cycle(rows), n)):
            lap = i // len(rows)
            fh.write(json.dumps({**row, "_id": f"{row['_id']}~{lap + 1}" if lap else row["_id"]}) + "\n")


def run(corpus: Path, store: Path, extra: list[str], step: int | None = None) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, last line of output) of one ``sparsehybrid index`` run."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "sparsehybrid.cli", "index", str(corpus)]
    command += ["--store", f"qdrant-edge://{store}" + (f"?step={step}" if step else ""), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"index failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return peak_kb / 1024, seconds, done.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "msmarco-5k")
    ap.add_argument("--dir", type=Path, default=None, help="Where corpora and stores go (default: temporary).")
    ap.add_argument("--step", type=int, help="The store's bounded step (its URL's ?step=; default: the store's).")
    ap.add_argument("extra", nargs="*", help="More `sparsehybrid index` options (after --).")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="index-memory-"))
    root.mkdir(parents=True, exist_ok=True)
    step = f", ?step={args.step}" if args.step else ""
    print(f"sparsehybrid index, both default encoders unless told otherwise {args.extra}{step}")
    print("| documents | peak RSS MiB | vs first | seconds | docs/s | load before / after |")
    print("|---:|---:|---:|---:|---:|---|")
    first = None
    for n in args.docs:
        corpus, store = root / f"corpus-{n}.jsonl", root / f"store-{n}"
        write_corpus(args.dataset / "corpus.jsonl", n, corpus)
        shutil.rmtree(store, ignore_errors=True)
        load = os.getloadavg()[0]
        peak, seconds, _ = run(corpus, store, args.extra, args.step)
        first = first or peak
        print(
            f"| {n:,} | {peak:,.0f} | {peak / first:.2f}x | {seconds:.0f} | {n / seconds:.1f} | "
            f"{load:.1f} / {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
        shutil.rmtree(store, ignore_errors=True)
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
