"""Query latency per retrieval mode on an existing index, per stage (query encoding, store, explain).

    python benchmarks/search_latency.py --store qdrant-edge://./.sparsehybrid/quickstart
    python benchmarks/search_latency.py --store qdrant-edge:///tmp/cran --queries ../shared/datasets/cranfield

Uses the quickstart's example queries plus a few more unless --queries names a file (one per
line) or a BEIR folder (its queries.jsonl). Each mode runs with explanations on (the default) and
off; the table shows medians of ``SearchResults.timing`` (store = the retrievers plus reading
the shown hits' payloads) and of the process CPU time per query (on a shared machine wall time
includes waiting for a core; CPU time does not). Hybrid runs twice, query by query side by side:
``hybrid`` encodes the sparse and dense query vectors at once (the default on two cores or more),
``hyb-seq`` one after the other. To compare two versions of the library side by side, run this
script with each on ``PYTHONPATH`` in turn.

``--batch N`` adds throughput: per mode (explanations off and on), queries/s of ``search_batch``
over batches of N queries beside a loop of single ``search`` calls over the same queries, run
alternately (best of ``--rounds``) so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXTRA_QUERIES = [
    "how to format dates and times",
    "serialize python objects to bytes",
    "make an http request",
    "hash a password securely",
    "sort a list by a key",
    "temporary files and directories",
    "parse xml documents",
    "measure execution time of small code snippets",
]


def load_queries(spec: str | None, limit: int) -> list[str]:
    from sparsehybrid.example_corpus import EXAMPLE_QUERIES

    if spec is None:
        return (EXAMPLE_QUERIES + EXTRA_QUERIES)[:limit]
    path = Path(spec)
    if path.is_dir():
        lines = (path / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines if line.strip()][:limit]
    return [q.strip() for q in path.read_text(encoding="utf-8").splitlines() if q.strip()][:limit]


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, round(q * len(values)) - 1)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="qdrant-edge://./.sparsehybrid/quickstart")
    ap.add_argument("--queries", help="A text file with one query per line, or a BEIR folder.")
    ap.add_argument("--limit", type=int, default=60, help="queries to run per mode")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument(
        "--batch", type=int, help="also compare search_batch over batches of this size with single searches"
    )
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the --batch comparison")
    ap.add_argument("--skip-latency", action="store_true", help="only the --batch comparison")
    args = ap.parse_args()

    import torch

    import sparsehybrid
    from sparsehybrid import open_searcher, open_store

    if args.threads:
        torch.set_num_threads(args.threads)
    queries = load_queries(args.queries, args.limit)
    store = open_store(args.store)
    searcher = open_searcher(store)
    for q in queries[:5]:
        searcher.search(q)  # warm-up: first calls allocate
    print(
        f"{sparsehybrid.__file__}\n{args.store}: {store.count()} points, {len(queries)} queries, "
        f"top_k={args.top_k}, candidates={args.candidates}, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if not args.skip_latency:
        latency(searcher, queries, args)
    if args.batch:
        throughput(searcher, queries, [*searcher.retrievers, "hybrid"], args)
    store.close()


def latency(searcher, queries: list[str], args) -> None:
    """Per mode and explain setting: medians of each stage and of the CPU time per query."""
    print(
        f"{'mode':<8}{'explain':<9}{'total p50':>10}{'p95':>8}{'encode':>8}{'store':>8}{'explain':>9}{'CPU p50':>9}  ms"
    )
    variants = [(mode, True) for mode in searcher.retrievers]
    if searcher.sparse is not None and searcher.dense is not None:
        variants += [("hybrid", True), ("hybrid", False)]  # run side by side, query by query
    else:
        variants.append(("hybrid", True))
    for explain in (True, False):
        rows: dict[tuple[str, bool], dict[str, list[float]]] = {}
        for q in queries:
            for mode, parallel in variants:
                searcher.parallel_encode = parallel
                row = rows.setdefault((mode, parallel), {k: [] for k in ("total", "encode", "store", "explain", "cpu")})
                c = time.process_time()
                timing = searcher.search(
                    q, top_k=args.top_k, mode=mode, candidates=args.candidates, explain=explain
                ).timing
                row["cpu"].append(time.process_time() - c)
                row["total"].append(timing.total)
                row["encode"].append(timing.encode)
                row["store"].append(sum(timing.retrieve.values()) + getattr(timing, "payloads", 0.0))
                row["explain"].append(timing.explain)
        for (mode, parallel), row in rows.items():
            label = mode if parallel else "hyb-seq"
            print(
                f"{label:<8}{'on' if explain else 'off':<9}{p(row['total'], 0.5):>10.1f}{p(row['total'], 0.95):>8.1f}"
                f"{p(row['encode'], 0.5):>8.1f}{p(row['store'], 0.5):>8.1f}{p(row['explain'], 0.5):>9.1f}"
                f"{statistics.median(row['cpu']) * 1000:>9.1f}"
            )
    searcher.parallel_encode = True


def throughput(searcher, queries: list[str], modes: list[str], args) -> None:
    """Queries/s: search_batch in batches of ``args.batch`` vs a loop of single searches."""
    options = {"top_k": args.top_k, "candidates": args.candidates}
    batches = [queries[i : i + args.batch] for i in range(0, len(queries), args.batch)]
    print(f"\nthroughput, batches of {args.batch}, best of {args.rounds} alternating rounds")
    print(f"{'mode':<8}{'explain':<9}{'loop q/s':>10}{'batch q/s':>11}{'speed-up':>10}")
    for mode in modes:
        for explain in (False, True):
            loop, batch = float("inf"), float("inf")
            for _ in range(args.rounds):
                t = time.perf_counter()
                for q in queries:
                    searcher.search(q, mode=mode, explain=explain, **options)
                loop = min(loop, time.perf_counter() - t)
                t = time.perf_counter()
                for b in batches:
                    searcher.search_batch(b, mode=mode, explain=explain, **options)
                batch = min(batch, time.perf_counter() - t)
            n = len(queries)
            print(f"{mode:<8}{'on' if explain else 'off':<9}{n / loop:>10.0f}{n / batch:>11.0f}{loop / batch:>9.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
