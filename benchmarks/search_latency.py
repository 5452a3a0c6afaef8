"""Query latency per retrieval mode on an existing index (query encoding and explanations included).

    python benchmarks/search_latency.py --store qdrant-edge://./.sparsehybrid/quickstart

Uses the quickstart's example queries plus a few more unless --queries names a file (one per line).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="qdrant-edge://./.sparsehybrid/quickstart")
    ap.add_argument("--queries", help="A text file with one query per line.")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=100)
    args = ap.parse_args()

    from sparsehybrid import open_searcher, open_store
    from sparsehybrid.quickstart import EXAMPLE_QUERIES

    queries = (
        [q.strip() for q in Path(args.queries).read_text(encoding="utf-8").splitlines() if q.strip()]
        if args.queries
        else EXAMPLE_QUERIES + EXTRA_QUERIES
    )
    store = open_store(args.store)
    searcher = open_searcher(store)
    for q in queries[:3]:
        searcher.search(q)  # warm-up: first calls allocate
    print(
        f"{args.store}: {store.count()} points, {len(queries)} queries, top_k={args.top_k}, candidates={args.candidates}"
    )
    for mode in [*searcher.retrievers, "hybrid"]:
        lat = []
        for q in queries:
            t = time.perf_counter()
            searcher.search(q, top_k=args.top_k, mode=mode, candidates=args.candidates)
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        p95 = lat[max(0, round(0.95 * len(lat)) - 1)]
        print(f"{mode:7s} p50 {statistics.median(lat):7.1f} ms   p95 {p95:7.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
