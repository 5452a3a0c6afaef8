"""Searches through `sparsehybrid serve` while an index job writes to the same embedded store.

    python benchmarks/service_load.py --clients 8 --seconds 60 --docs 1000

Builds an embedded store from the first ``--base`` Cranfield documents (default models), starts
the service on it, then runs ``--clients`` loopback clients (SearchClient, hybrid searches with
explanations, no retries: a failure counts) for ``--idle`` seconds alone, then while
``sparsehybrid index`` adds ``--docs`` new documents to the same store (it finds the service and
writes through it), for at least ``--seconds`` and until the job ends. Prints failed searches,
p50/p95 idle vs during indexing, and whether every added document is searchable at the end. With
``--kill`` it then kills the service with SIGKILL while clients search, restarts it and checks that
the index is whole. Bounded: the job gets ``--job-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))  # this checkout's package, also in the processes started below
QUERIES = [
    "boundary layer transition on a flat plate",
    "heat transfer in hypersonic flow",
    "buckling of thin cylindrical shells under pressure",
    "flutter of wings at supersonic speed",
    "pressure distribution on a slender body",
    "shock wave boundary layer interaction",
    "laminar flow skin friction",
    "stability of a viscous jet",
]


def env() -> dict[str, str]:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO), COLUMNS="200")
    e.pop("PREFECT_API_URL", None)
    return e


def write_corpus(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def start_service(store: str, port: int, log: Path) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", store, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env(), stdout=log.open("a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"service exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()["ready"]:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("service did not become ready in 300 s")


class Load:
    """``n`` clients searching in a loop; each search recorded as (start, seconds, ok)."""

    def __init__(self, url: str, n: int):
        self.url, self.n = url, n
        self.records: list[tuple[float, float, bool]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        from sparsehybrid.client import SearchClient

        with SearchClient(self.url, retries=0, timeout=60) as client:
            k = i
            while not self.stop.is_set():
                t = time.monotonic()
                try:
                    client.search(QUERIES[k % len(QUERIES)], top_k=10, mode="hybrid")
                    ok = True
                except Exception as exc:
                    ok = False
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.records.append((t, time.monotonic() - t, ok))
                k += 1

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def between(self, a: float, b: float) -> list[tuple[float, float, bool]]:
        return [r for r in self.records if a <= r[0] < b]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


def summary(name: str, rs: list[tuple[float, float, bool]], seconds: float) -> tuple[float, float]:
    lat = [r[1] for r in rs if r[2]]
    p50, p95 = pct(lat, 50), pct(lat, 95)
    failed = sum(1 for r in rs if not r[2])
    print(
        f"{name:<16} {len(rs):6d} searches  {failed:3d} failed  {len(rs) / max(seconds, 1e-9):6.1f}/s  "
        f"p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  mean {statistics.fmean(lat) * 1000 if lat else float('nan'):7.1f} ms"
    )
    return p50, p95


def all_searchable(url: str, added: list[dict]) -> list[str]:
    """Ids of added documents a filtered BM25 search for their own title does not return."""
    from sparsehybrid.client import SearchClient

    missing = []
    with SearchClient(url) as client:
        for r in added:
            hits = client.search(
                r["title"] or r["text"][:80], top_k=1, mode="bm25", filter={"n": r["n"]}, explain=False
            )
            if [h.doc_id for h in hits] != [r["_id"]]:
                missing.append(r["_id"])
    return missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="Least time the clients search while the job runs.")
    ap.add_argument("--idle", type=float, default=20.0, help="Seconds of searching before the job starts.")
    ap.add_argument("--docs", type=int, default=1000, help="Documents the index job adds.")
    ap.add_argument("--base", type=int, default=200, help="Documents in the store before the test.")
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--job-timeout", type=float, default=1800.0)
    ap.add_argument("--kill", action="store_true", help="Then kill -9 the service under load, restart, check.")
    ap.add_argument("--keep", type=Path, default=None, help="Work here (and keep it) instead of a temp dir.")
    args = ap.parse_args()

    rows = []
    with open(SHARED / "datasets" / "cranfield" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("text", "").strip():
                rows.append({"_id": r["_id"], "title": r.get("title", ""), "text": r["text"], "n": len(rows)})
    if args.base + args.docs > len(rows):
        sys.exit(f"Cranfield has {len(rows)} documents; --base + --docs must not exceed it")
    base, added = rows[: args.base], rows[args.base : args.base + args.docs]

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="service-load-"))
    tmp.mkdir(parents=True, exist_ok=True)
    store = f"qdrant-edge://{tmp}/idx"
    log = tmp / "serve.log"
    cli = [sys.executable, "-m", "sparsehybrid.cli", "index"]
    t = time.monotonic()
    subprocess.run(
        [*cli, str(write_corpus(tmp / "base.jsonl", base)), "--store", store],
        env=env(),
        check=True,
        capture_output=True,
    )
    print(
        f"base store: {len(base)} documents in {time.monotonic() - t:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    url = f"http://127.0.0.1:{args.port}"
    service = start_service(store, args.port, log)
    load = Load(url, args.clients)
    try:
        t_idle = time.monotonic()
        load.start()
        time.sleep(args.idle)
        t_job = time.monotonic()
        job = subprocess.Popen(
            [*cli, str(write_corpus(tmp / "added.jsonl", added)), "--store", store],
            env=env(),
            stdout=(tmp / "job.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            rc = job.wait(timeout=args.job_timeout)
        except subprocess.TimeoutExpired:
            job.kill()
            rc = -1
        t_done = time.monotonic()
        time.sleep(max(0.0, args.seconds - (t_done - t_job)))
        t_end = time.monotonic()
        load.finish()
        print(
            f"\n{args.clients} clients; index job: {args.docs} documents in {t_done - t_job:.1f} s, exit {rc}"
            f"{' (see ' + str(tmp / 'job.log') + ')' if rc else ''}"
        )
        _, idle95 = summary("idle", load.between(t_idle, t_job), t_job - t_idle)
        _, during95 = summary("during indexing", load.between(t_job, t_done), t_done - t_job)
        if t_end > t_done + 1:
            summary("after the job", load.between(t_done, t_end), t_end - t_done)
        failed = sum(1 for r in load.records if not r[2])
        print(f"failed searches: {failed}" + (f" (first: {load.errors[0]})" if load.errors else ""))
        print(f"p95 during / idle: {during95 / idle95:.2f}x (target <= 2x)")
        t = time.monotonic()
        missing = all_searchable(url, added)
        print(
            f"every added document searchable: {not missing} ({len(added) - len(missing)}/{len(added)}, checked in {time.monotonic() - t:.1f} s)"
        )

        if args.kill:
            from sparsehybrid.client import SearchClient

            before = SearchClient(url).info()
            load = Load(url, args.clients)
            load.start()
            time.sleep(2)
            os.kill(service.pid, signal.SIGKILL)
            service.wait()
            load.finish()
            t = time.monotonic()
            service = start_service(store, args.port, log)
            after = SearchClient(url).info()
            same = (after["documents"], after["points"]) == (before["documents"], before["points"])
            missing = all_searchable(url, added)
            print(
                f"kill -9 under load, restart in {time.monotonic() - t:.1f} s: documents {before['documents']} -> "
                f"{after['documents']}, points {before['points']} -> {after['points']}, intact: {same and not missing}"
            )
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
    print(f"work dir: {tmp}")


if __name__ == "__main__":
    main()
