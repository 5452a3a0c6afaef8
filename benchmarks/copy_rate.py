"""``sparsehybrid copy`` throughput: embedded -> embedded, embedded -> Parquet, Parquet -> embedded.

Builds N synthetic points shaped like the real ones (``scale.py``'s generator: ~150-non-zero
sparse vectors, 384-d dense, ~1 KB texts) in a Qdrant Edge store, then times each copy in this
process and prints points/s with the load average, ratios measured in one run. Embedded ->
embedded runs three times: as the engine's files (the default into a new embedded store), as the
engine's own points (``--no-files``, and into a store that already holds a collection) and as
records, the path between any other pair of stores.
The destination's ``optimize()`` is timed apart (it is index building, not copying).

    python benchmarks/copy_rate.py --points 100000 --dir /tmp/copy-bench
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import DENSE_DIM, VOCAB, Synthetic, memory_mib


def build(path: Path, points: int, batch: int = 1000) -> float:
    from sparsehybrid import open_store
    from sparsehybrid.connectors.base import CollectionSchema

    data = Synthetic(0)
    with open_store(f"qdrant-edge://{path}") as store:
        store.ensure_schema(
            CollectionSchema(
                sparse_model="synthetic",
                sparse_dim=VOCAB,
                dense_model="synthetic",
                dense_dim=DENSE_DIM,
                bm25_avg_len=170.0,
            )
        )
        t = time.perf_counter()
        for start in range(0, points, batch):
            store.upsert(data.records(start, min(batch, points - start)))
        return points / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="Where the stores go (default: a temporary folder).")
    parser.add_argument(
        "--no-optimize", action="store_true", help="skip the destinations' optimize (index building, timed apart)"
    )
    args = parser.parse_args()
    from sparsehybrid.connectors.transfer import copy_collection

    root = Path(args.dir or tempfile.mkdtemp(prefix="copy-bench-"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    source, parquet = root / "source", root / "points.parquet"
    upsert_rate = build(source, args.points)
    print(f"{args.points:,} points built at {upsert_rate:,.0f} upserts/s; load average {os.getloadavg()[0]:.1f}")
    runs = [
        ("embedded -> new embedded, files", f"qdrant-edge://{source}", f"qdrant-edge://{root / 'files'}"),
        ("embedded -> embedded, engine points", f"qdrant-edge://{source}", f"qdrant-edge://{root / 'copy'}"),
        ("embedded -> embedded as records", f"qdrant-edge://{source}", f"qdrant-edge://{root / 'records'}"),
        ("embedded -> parquet", f"qdrant-edge://{source}", f"parquet://{parquet}"),
        ("parquet -> embedded", f"parquet://{parquet}", f"qdrant-edge://{root / 'loaded'}"),
    ]
    print("| copy | points/s | vs upsert | seconds | optimize s | verified points / queries | RSS MiB | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

    engine_form = QdrantEdgeStore.engine_points_to
    for name, src, dst in runs:
        # "as records": the path every other pair of stores takes (records out, BM25 derived
        # again from the text on the way in), measured beside the engine-form copy.
        QdrantEdgeStore.engine_points_to = (lambda self, dest: None) if name.endswith("records") else engine_form  # type: ignore[method-assign]
        report = copy_collection(
            src, dst, batch_size=args.batch_size, optimize=not args.no_optimize, files=name.endswith("files")
        )
        mem = memory_mib()
        print(
            f"| {name} | {report.points_per_second:,.0f} | {report.points_per_second / upsert_rate:.2f}x | "
            f"{report.seconds:.1f} | {report.optimize_seconds:.1f} | {report.vectors_checked} / {report.queries_checked} | "
            f"{mem['rss']:.0f} (peak {mem['peak']:.0f}) | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
    print(
        f"parquet file: {parquet.stat().st_size / 2**20:.0f} MiB; store: "
        f"{sum(f.stat().st_blocks * 512 for f in source.rglob('*') if f.is_file()) / 2**20:.0f} MiB"
    )
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
