"""The search service under concurrent clients: the serial service (one search at a time, as
before issue 22: ``--workers 1 --batch-window-ms 0 --max-batch-size 1``) and the concurrent, batching one, in one run.

    python benchmarks/service_concurrency.py --base 300 --seconds 8 --rss-seconds 60

Builds an embedded store from the first ``--base`` Cranfield documents (default models), then for
each service configuration starts ``sparsehybrid serve`` on it and measures throughput and
p50/p95/p99 latency of hybrid searches at 1, 4, 16 and 64 concurrent loopback clients (each a
thread with its own connection, ``--seconds`` per level; a failed search counts), then a burst
of ``--burst`` async requests at once (429s counted, any 5xx or transport failure is a failure),
and the service's RSS sampled every second over a ``--rss-seconds`` run at 16 clients. Prints the
table, the ratios the issue targets (16-client vs one-client throughput, p99 vs one-client p50)
and the load average: the machine is shared, so compare the rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import QUERIES, SHARED, env, write_corpus

LEVELS = (1, 4, 16, 64)
CONFIGS = {"serial": ["--workers", "1", "--batch-window-ms", "0", "--max-batch-size", "1"], "concurrent": []}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(store: str, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", store, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, env=env(), stdout=log.open("a"), stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"service exited {proc.returncode}; see {log}")
        try:
            if httpx.get(url + "/healthz", timeout=2).json().get("ready"):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit("service did not become ready")


def run_clients(url: str, clients: int, seconds: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        mine, failed = [], 0
        with httpx.Client(base_url=url, timeout=60) as http:
            n = i
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = http.post("/search", json={"query": QUERIES[n % len(QUERIES)], "top_k": 10})
                if r.status_code == 200:
                    mine.append(time.perf_counter() - t)
                else:
                    failed += 1
                n += 1
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "qps": len(latencies) / wall,
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
        "failed": failures[0],
        "n": len(latencies),
    }


async def burst(url: str, n: int) -> dict[str, int]:
    import httpx

    counts: dict[str, int] = {}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def one(i: int) -> str:
            try:
                r = await http.post("/search", json={"query": QUERIES[i % len(QUERIES)], "top_k": 10})
                return str(r.status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__

        for outcome in await asyncio.gather(*(one(i) for i in range(n))):
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def rss_run(url: str, pid: int, seconds: float) -> list[float]:
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append(rss_mb(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    run_clients(url, 16, seconds)
    done.set()
    sampler.join()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=int, default=300, help="Documents in the store.")
    ap.add_argument("--seconds", type=float, default=8.0, help="Seconds per concurrency level.")
    ap.add_argument("--burst", type=int, default=1000, help="Async requests sent at once.")
    ap.add_argument("--rss-seconds", type=float, default=60.0, help="Length of the RSS-sampled run (0: skip).")
    args = ap.parse_args()

    rows = []
    with open(SHARED / "datasets" / "cranfield" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("text", "").strip():
                rows.append({"_id": r["_id"], "title": r.get("title", ""), "text": r["text"]})
            if len(rows) >= args.base:
                break
    tmp = Path(tempfile.mkdtemp(prefix="service-concurrency-"))
    store = f"qdrant-edge://{tmp}/idx"
    cli = [sys.executable, "-m", "sparsehybrid.cli", "index", str(write_corpus(tmp / "base.jsonl", rows))]
    subprocess.run([*cli, "--store", store], env=env(), check=True, capture_output=True)
    print(f"store: {len(rows)} Cranfield documents, default models; {os.cpu_count()} CPUs (shared machine)")

    table: dict[str, dict[int, dict[str, float]]] = {}
    for name, extra in CONFIGS.items():
        proc, url = start(store, extra, tmp / f"{name}.log")
        try:
            run_clients(url, 1, 2.0)  # warm-up
            table[name] = {}
            for clients in LEVELS:
                load = os.getloadavg()[0]
                m = table[name][clients] = run_clients(url, clients, args.seconds)
                print(
                    f"{name:10} {clients:3} clients: {m['qps']:7.1f} q/s  p50 {m['p50']:7.1f} ms  "
                    f"p95 {m['p95']:7.1f} ms  p99 {m['p99']:7.1f} ms  failed {m['failed']}  (load {load:.1f})",
                    flush=True,
                )
            if name == "concurrent":
                counts = asyncio.run(burst(url, args.burst))
                fivexx = sum(v for k, v in counts.items() if not k.isdigit() or k.startswith("5"))
                print(
                    f"burst of {args.burst}: {counts}  (429 counted; 5xx or failed: {fivexx})  RSS {rss_mb(proc.pid):.0f} MB"
                )
                if args.rss_seconds > 0:
                    s = rss_run(url, proc.pid, args.rss_seconds)
                    print(
                        f"RSS over {args.rss_seconds:g} s at 16 clients: first {s[0]:.0f} MB, max {max(s):.0f} MB, last {s[-1]:.0f} MB"
                    )
        finally:
            proc.terminate()
            proc.wait(30)

    for name, levels in table.items():
        one, sixteen = levels[1], levels[16]
        print(
            f"{name}: 16-client throughput {sixteen['qps'] / one['qps']:.2f}x one client (target >= 1.8); "
            f"16-client p99 {sixteen['p99'] / one['p50']:.1f}x one-client p50 (target <= 10)"
        )
    print(f"load average now {os.getloadavg()}; other sessions share this machine")


if __name__ == "__main__":
    main()
