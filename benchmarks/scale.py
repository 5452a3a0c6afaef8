"""The embedded store (Qdrant Edge through ``open_store``) as it grows: 10k, 100k (, 1M) points.

Synthetic points shaped like the real ones: SPLADE-tiny-like sparse document vectors (~150
non-zeros over a 30,522-token vocabulary, token ids drawn from a Zipf-like popularity so common
tokens collide as in real text, log-normal weights), 384-d unit dense vectors, and ~1 KB texts
of Zipf-distributed words (the store's BM25 indexes them) in the standard payload. Queries:
~20 non-zero sparse vectors of the same popularity, random unit dense vectors, 4-word BM25 texts.
Encoding is excluded: this measures the store and our wrapper around it.

Per size: upsert rate through ``VectorStore.upsert`` (batches of 256, our conversion included),
``optimize()`` time, process memory after optimizing, bytes on disk, p50/p95 per mode (sparse,
dense, bm25 through the ``search_*`` methods, 100 candidates reading only ``doc_id`` as
``HybridSearcher`` does, and sparse once more with whole payloads; hybrid = ``search_fused``,
one engine request with RRF over the three, top 10 with payloads), and the queries/s of hybrid
requests sent in batches of 32 through ``VectorStore.search_batch`` (one engine ``query_batch``
each).

Each size runs in a fresh process: a closed shard's memory is not handed back to the system (at
50k points 484 of 493 MiB of heap stayed after ``close()``); a later shard in the same process
reuses it, but separate processes keep each size's numbers its own.

Memory is split into ``anon`` (heap: the engine's in-RAM indexes and buffers, and ours) and
``mapped`` (the segment files the engine memory-maps: page cache, which the kernel drops under
pressure, though it counts in RSS); ``peak`` is the high-water RSS of the build; ``RSS searched``
and ``peak searched`` are taken after every search (the pages searches touched, and the encoders
with ``--queries-file``). The generator holds one
upsert batch at a time: generating 30k points without storing them keeps RSS at ~46 MiB.

    python benchmarks/scale.py                          # 10k and 100k points
    python benchmarks/scale.py --sizes 10000 100000 1000000 --dir /big/disk
    python benchmarks/scale.py --sizes 30000 --storage ram disk   # the embedded store's ?storage= modes
    python benchmarks/scale.py --sizes 1000000 --storage disk --step 100000   # a million points
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 30522
DENSE_DIM = 384
WORDS = [f"w{i}" for i in range(20000)]


def zipf_sampler(n: int, rng: random.Random, s: float = 1.0):
    """Sample ids 0..n-1 with probability ~ 1/(rank+10)^s over a fixed random permutation."""
    import numpy as np

    weights = 1.0 / (np.arange(n) + 10.0) ** s
    cdf = np.cumsum(weights / weights.sum())
    permutation = np.random.default_rng(rng.randrange(2**32)).permutation(n)

    def sample(k: int, gen) -> list[int]:
        return permutation[np.searchsorted(cdf, gen.random(k))].tolist()

    return sample


def trusted_sparse(indices: list[int], values: list[float]):
    """A SparseVector without re-validating synthetic data (unique indices, finite weights)."""
    from sparsehybrid.types import SparseVector

    vector = object.__new__(SparseVector)
    object.__setattr__(vector, "indices", tuple(indices))
    object.__setattr__(vector, "values", tuple(values))
    return vector


class Synthetic:
    def __init__(self, seed: int = 0):
        import numpy as np

        self.rng = random.Random(seed)
        self.gen = np.random.default_rng(seed)
        self.tokens = zipf_sampler(VOCAB, self.rng)
        self.words = zipf_sampler(len(WORDS), self.rng)

    def sparse(self, nnz: int):
        ids = list(dict.fromkeys(self.tokens(nnz * 2, self.gen)))[:nnz]
        values = self.gen.lognormal(-0.5, 0.6, len(ids)).round(4).tolist()
        return trusted_sparse(ids, values)

    def dense(self, n: int):
        import numpy as np

        x = self.gen.standard_normal((n, DENSE_DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def text(self, n_words: int) -> str:
        return " ".join(WORDS[i] for i in self.words(n_words, self.gen))

    def records(self, start: int, n: int):
        from sparsehybrid.types import Chunk, PointRecord

        dense = self.dense(n)
        out = []
        for j in range(n):
            text = self.text(170)  # ~1 KB
            chunk = Chunk(doc_id=f"d{start + j}", chunk=0, text=text, start=0, end=len(text), title=None)
            nnz = int(self.gen.integers(100, 200))
            out.append(PointRecord(chunk, self.sparse(nnz), dense[j].tolist()))
        return out


def memory_mib() -> dict[str, float]:
    """This process's memory (MiB): ``rss`` = ``anon`` (heap: ours and the engine's) + ``file``
    (the engine's memory-mapped segment files, page cache the kernel can drop) + shmem; ``peak``
    is the high-water RSS."""
    status = Path("/proc/self/status").read_text()
    keys = {"rss": "VmRSS", "anon": "RssAnon", "file": "RssFile", "peak": "VmHWM"}
    out = {}
    for key, name in keys.items():
        match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
        out[key] = int(match.group(1)) / 1024 if match else float("nan")
    return out


def rss_mib() -> float:
    return memory_mib()["rss"]


def percentile(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return ordered[max(0, round(q * len(ordered)) - 1)] * 1000


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def real_queries(path: Path | None, n: int) -> list[str]:
    """Up to ``n`` query texts of a BEIR collection (what a user types), cycled to ``n``."""
    if path is None:
        return []
    import json

    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]
    return [texts[i % len(texts)] for i in range(n)]


def measure(
    size: int,
    root: Path,
    n_queries: int,
    batch: int,
    seed: int,
    progress: bool = False,
    storage: str = "ram",
    queries_file: Path | None = None,
    step: int | None = None,
) -> dict:
    from sparsehybrid import open_store
    from sparsehybrid.connectors.base import CollectionSchema, StoreQuery
    from sparsehybrid.search import CANDIDATE_FIELDS

    path = root / f"scale-{size}-{storage}"
    shutil.rmtree(path, ignore_errors=True)
    store = open_store(f"qdrant-edge://{path}?storage={storage}" + (f"&step={step}" if step else ""))
    store.ensure_schema(
        CollectionSchema(
            sparse_model="synthetic", sparse_dim=VOCAB, dense_model="synthetic", dense_dim=DENSE_DIM, bm25_avg_len=170.0
        )
    )
    data = Synthetic(seed)
    upsert_seconds = 0.0
    for start in range(0, size, batch):
        records = data.records(start, min(batch, size - start))
        t = time.perf_counter()
        store.upsert(records)
        upsert_seconds += time.perf_counter() - t
        if progress and (start // batch) % 200 == 199:
            mem = memory_mib()
            print(
                f"  {start + batch:,} upserted, {(start + batch) / upsert_seconds:.0f}/s, "
                f"RSS {mem['rss']:.0f} MiB (anon {mem['anon']:.0f}, file {mem['file']:.0f})",
                file=sys.stderr,
                flush=True,
            )
    upserted = memory_mib()
    t = time.perf_counter()
    store.flush()
    store.optimize()
    optimize_seconds = time.perf_counter() - t
    mem = memory_mib()
    result = {
        "storage": storage,
        "size": size,
        "upsert_per_s": size / upsert_seconds,
        "optimize_s": optimize_seconds,
        "rss_mib": mem["rss"],
        "anon_mib": mem["anon"],
        "file_mib": mem["file"],
        "peak_mib": mem["peak"],
        "anon_upserted_mib": upserted["anon"],
        "disk_mib": (store.disk_size() or 0) / 2**20,
    }
    if progress:
        print(f"  optimized in {optimize_seconds:.0f} s, RSS {mem}", file=sys.stderr, flush=True)

    queries = Synthetic(seed + 1)
    sparse_q = [queries.sparse(int(queries.gen.integers(12, 30))) for _ in range(n_queries)]
    dense_q = queries.dense(n_queries).tolist()
    text_q = [queries.text(4) for _ in range(n_queries)]
    k = 100
    light = CANDIDATE_FIELDS  # what HybridSearcher reads per candidate
    modes = {
        "sparse_full": timed(lambda i: store.search_sparse(sparse_q[i], k), range(n_queries)),
        "sparse": timed(lambda i: store.search_sparse(sparse_q[i], k, fields=light), range(n_queries)),
        "dense": timed(lambda i: store.search_dense(dense_q[i], k, fields=light), range(n_queries)),
        "bm25": timed(lambda i: store.search_bm25(text_q[i], k, fields=light), range(n_queries)),
        "hybrid": timed(
            lambda i: store.search_fused(sparse=sparse_q[i], dense=dense_q[i], text=text_q[i], limit=10, candidates=k),
            range(n_queries),
        ),
    }
    typed = real_queries(queries_file, n_queries)
    if typed:
        # Real query texts through both default encoders, then the same fused request: what a
        # HybridSearcher query costs end to end (the vectors carry real token ids, the collection's
        # vocabulary; the dense space is synthetic, which changes which points come back, not the work).
        from sparsehybrid.encoders.dense import DenseEncoder
        from sparsehybrid.encoders.sparse import SparseEncoder

        sparse_enc, dense_enc = SparseEncoder(), DenseEncoder()

        def encode_and_search(i: int) -> None:
            sv, dv = sparse_enc.encode_query([typed[i]])[0], dense_enc.encode_query([typed[i]])[0]
            store.search_fused(sparse=sv, dense=dv.tolist(), text=typed[i], limit=10, candidates=k)

        timed(encode_and_search, range(min(20, n_queries)))  # warm-up: first calls build caches
        modes["hybrid_encoded"] = timed(encode_and_search, range(n_queries))
    for mode, seconds in modes.items():
        result[f"{mode}_p50"] = percentile(seconds, 0.5)
        result[f"{mode}_p95"] = percentile(seconds, 0.95)

    # Batched hybrid: the same requests as search_fused, 32 per VectorStore.search_batch call
    # (one engine query_batch each, our conversion included).
    fused = [
        StoreQuery("fused", 10, sparse=sparse_q[i], dense=dense_q[i], text=text_q[i], candidates=k)
        for i in range(n_queries)
    ]
    t = time.perf_counter()
    for s in range(0, n_queries, 32):
        store.search_batch(fused[s : s + 32])
    result["batched_qps"] = n_queries / (time.perf_counter() - t)
    result["sequential_qps"] = n_queries / sum(modes["hybrid"])
    # After the searches: the segment pages they touched are mapped (page cache, counted in RSS),
    # and with --queries-file both encoders are loaded.
    searched = memory_mib()
    result["rss_searched_mib"], result["peak_searched_mib"] = searched["rss"], searched["peak"]
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    return result


COLUMNS = [
    ("storage", "storage", "{:>8}"),
    ("size", "points", "{:>10,}"),
    ("upsert_per_s", "upsert/s", "{:>10.0f}"),
    ("optimize_s", "optimize s", "{:>11.1f}"),
    ("rss_mib", "RSS MiB", "{:>9.0f}"),
    ("anon_mib", "anon", "{:>7.0f}"),
    ("file_mib", "mapped", "{:>7.0f}"),
    ("peak_mib", "peak", "{:>7.0f}"),
    ("disk_mib", "disk MiB", "{:>9.0f}"),
    ("sparse_full_p50", "sparse+payloads p50", "{:>20.2f}"),
    ("sparse_p50", "sparse p50", "{:>11.2f}"),
    ("sparse_p95", "p95", "{:>7.2f}"),
    ("dense_p50", "dense p50", "{:>10.2f}"),
    ("dense_p95", "p95", "{:>7.2f}"),
    ("bm25_p50", "bm25 p50", "{:>9.2f}"),
    ("bm25_p95", "p95", "{:>7.2f}"),
    ("hybrid_p50", "hybrid p50", "{:>11.2f}"),
    ("hybrid_p95", "p95", "{:>7.2f}"),
    ("hybrid_encoded_p50", "+encoding p50", "{:>14.2f}"),
    ("hybrid_encoded_p95", "p95", "{:>7.2f}"),
    ("sequential_qps", "hybrid q/s", "{:>11.0f}"),
    ("batched_qps", "batched q/s", "{:>12.0f}"),
    ("rss_searched_mib", "RSS searched", "{:>13.0f}"),
    ("peak_searched_mib", "peak searched", "{:>14.0f}"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256, help="points per upsert")
    ap.add_argument("--dir", type=Path, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true", help="upsert progress and memory on stderr")
    ap.add_argument(
        "--storage",
        nargs="+",
        default=["ram"],
        choices=["ram", "disk"],
        help="the embedded store's ?storage= mode(s), each size measured in each",
    )
    ap.add_argument(
        "--queries-file",
        type=Path,
        help="a BEIR queries.jsonl: also time hybrid searches with these texts encoded by the default models",
    )
    ap.add_argument("--step", type=int, help="a disk store's bounded step (the store URL's ?step=; default 20000)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="sparsehybrid-scale-"))
    root.mkdir(parents=True, exist_ok=True)

    print(f"Qdrant Edge via open_store, {args.queries} queries per mode, load average {os.getloadavg()[0]:.1f}")
    header = "".join(f"{label:>{len(fmt.format(0))}}" for _, label, fmt in COLUMNS)
    print(header + "   (latencies in ms)")
    rows = []
    spawn = multiprocessing.get_context("spawn")
    for size in args.sizes:
        for storage in args.storage:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                job = pool.submit(
                    measure,
                    size,
                    root,
                    args.queries,
                    args.batch,
                    args.seed,
                    args.progress,
                    storage,
                    args.queries_file,
                    args.step,
                )
                row = job.result()
            rows.append(row)
            print("".join(fmt.format(row.get(key, float("nan"))) for key, _, fmt in COLUMNS), flush=True)
    numeric = [key for key, _, _ in COLUMNS if key != "storage"]
    for storage in args.storage:
        mine = [row for row in rows if row["storage"] == storage]
        if len(mine) > 1:
            print(f"growth vs the first size, storage={storage} (x):")
            for row in mine[1:]:
                growth = {key: row[key] / mine[0][key] for key in numeric if mine[0].get(key) and key in row}
                print(f"  {row['size']:,}: " + ", ".join(f"{key} {value:.2f}" for key, value in growth.items()))
    if len(args.storage) == 2:
        print("disk / ram at each size (x):")
        for size in args.sizes:
            ram, disk = (next(r for r in rows if r["size"] == size and r["storage"] == m) for m in ("ram", "disk"))
            print(
                f"  {size:,}: "
                + ", ".join(f"{key} {disk[key] / ram[key]:.2f}" for key in numeric if ram.get(key) and key in disk)
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
