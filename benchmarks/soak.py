"""A bounded chaos soak of the embedded store (issue 23): for a fixed duration, random index jobs,
``--sync`` jobs, searches (some while a job writes), and ``kill -9`` of jobs mid-write, each in its
own process on one store, checking the invariants after every step:

* every acknowledged document (its job exited 0) is present with its latest content, unless a later
  job that was killed touched it (then either version, or absence for a killed sync's delete);
* no duplicates: one point per document (the soak's texts are one chunk each), and the store's
  count equals the documents it holds;
* searches return only texts some job wrote for that id;
* no process left behind.

Loopback only: no network at all (the embedded store). BM25-only jobs, so no model is loaded and
the soak exercises the store, the lock and the sync pass rather than the CPU.

    nice -n 10 python benchmarks/soak.py --seconds 1800 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = """
import json, sys, time
from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document
spec = json.load(open(sys.argv[2]))
deadline = time.monotonic() + 60
while True:
    try:
        store = QdrantEdgeStore(sys.argv[1])
        break
    except StoreLockedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.01)
docs = [Document(id=i, text=t) for i, t in spec["docs"]]
stats = Indexer(store, bm25=True, batch_size=spec["batch"]).index(docs, sync=spec["sync"], allow_mass_delete=True)
store.close()
print(json.dumps({"added": stats.added, "updated": stats.updated, "deleted": stats.deleted}), flush=True)
"""

SEARCH = """
import json, sys, time
from sparsehybrid.connectors import StoreLockedError
from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore
deadline = time.monotonic() + float(sys.argv[3])
found = []
while True:
    try:
        store = QdrantEdgeStore(sys.argv[1])
    except StoreLockedError:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
        continue
    found += [(p.payload["doc_id"], p.payload["text"]) for p in store.search_bm25(sys.argv[2], 20)]
    store.close()
    if time.monotonic() > deadline:
        break
print(json.dumps(found), flush=True)
"""


class Soak:
    def __init__(self, store: Path, work: Path, rng: random.Random, ids: int):
        self.store, self.work, self.rng = store, work, rng
        self.ids = [f"d{i}" for i in range(ids)]
        self.acked: dict[str, str] = {}  # the content every acknowledged job left
        self.maybe: dict[str, set[str | None]] = {}  # ids a killed job touched: also these (None: absent)
        self.written: dict[str, set[str]] = {}  # every text ever sent for an id
        self.version = 0
        self.counts = {"index": 0, "sync": 0, "search": 0, "search_during_write": 0, "kill9": 0, "checks": 0}
        self.children: list[subprocess.Popen] = []
        self.job_seconds = 1.0  # the last completed job's wall time: kills land inside a job

    def text(self, doc_id: str) -> str:
        self.version += 1
        words = " ".join(self.rng.choice(["wing", "flutter", "shell", "heat", "inlet", "layer"]) for _ in range(6))
        text = f"{doc_id} version {self.version} {words}"
        self.written.setdefault(doc_id, set()).add(text)
        return text

    def spawn(self, code: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.store), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children.append(proc)
        return proc

    def job_spec(self, sync: bool) -> tuple[Path, dict[str, str]]:
        if sync:
            present = set(self.acked)
            chosen = set(self.rng.sample(self.ids, k=len(self.ids) // 2)) | set(
                self.rng.sample(sorted(present), k=len(present) * 3 // 4)
            )
        else:
            chosen = set(self.rng.sample(self.ids, k=self.rng.randint(1, len(self.ids) // 3)))
        docs = {i: (self.text(i) if self.rng.random() < 0.6 or i not in self.acked else self.acked[i]) for i in chosen}
        spec = self.work / f"job{self.version}.json"
        spec.write_text(
            json.dumps({"docs": sorted(docs.items()), "sync": sync, "batch": self.rng.choice([5, 20, 100])})
        )
        return spec, docs

    def run_job(self, sync: bool, kill_after: float | None = None, with_search: bool = False) -> None:
        spec, docs = self.job_spec(sync)
        searcher = self.spawn(SEARCH, "wing flutter", "3") if with_search else None
        t0 = time.monotonic()
        job = self.spawn(JOB, str(spec))
        if kill_after is not None:
            time.sleep(kill_after)
            job.send_signal(signal.SIGKILL)
        _, err = job.communicate(timeout=300)
        if kill_after is not None and job.returncode == -signal.SIGKILL:
            self.counts["kill9"] += 1
            for i in set(self.ids) if sync else set(docs):
                options = self.maybe.setdefault(i, set())
                options.add(self.acked.get(i))
                options.add(docs.get(i))  # a killed sync may have deleted it (None) or written it
        else:
            assert job.returncode == 0, f"job failed: {err.strip().splitlines()[-1:]}"
            self.job_seconds = time.monotonic() - t0
            self.counts["sync" if sync else "index"] += 1
            if sync:
                self.acked = {}
            self.acked.update(docs)
            for i in set(self.ids) if sync else set(docs):
                self.maybe.pop(i, None)
        if searcher is not None:
            self.check_search(searcher)
            self.counts["search_during_write"] += 1

    def check_search(self, proc: subprocess.Popen) -> None:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"search failed: {err.strip().splitlines()[-1:]}"
        for doc_id, text in json.loads(out):
            assert text in self.written.get(doc_id, set()), f"search returned a text never written for {doc_id}"

    def search(self) -> None:
        self.check_search(self.spawn(SEARCH, self.rng.choice(["wing", "heat inlet", "shell layer flutter"]), "0"))
        self.counts["search"] += 1

    def check(self) -> None:
        """The invariants, read by a fresh process-local open of the store."""
        from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

        store = QdrantEdgeStore(self.store) if (self.store / "sparsehybrid.json").exists() else None
        if store is None:
            assert not self.acked, "acknowledged documents but no store"
            return
        try:
            points = [p.payload for p in store.iter_points()]
            count = store.count()
        finally:
            store.close()
        held: dict[str, str] = {}
        for p in points:
            assert p["doc_id"] not in held, f"duplicate {p['doc_id']}"
            held[p["doc_id"]] = p["text"]
        assert count == len(points) == len(held), (count, len(points), len(held))
        for i in self.ids:
            allowed = self.maybe.get(i, set()) | {self.acked.get(i)}
            assert held.get(i) in allowed, f"{i}: stored {held.get(i)!r}, allowed {allowed}"
        for proc in self.children:
            assert proc.poll() is not None, f"process {proc.pid} left running"
        self.children.clear()
        self.counts["checks"] += 1

    def step(self) -> None:
        op = self.rng.choices(["index", "sync", "search", "kill", "search_during"], weights=[3, 2, 3, 2, 2])[0]
        if op == "index":
            self.run_job(sync=False)
        elif op == "sync":
            self.run_job(sync=True)
        elif op == "search":
            self.search()
        elif op == "kill":
            self.run_job(sync=self.rng.random() < 0.5, kill_after=self.rng.uniform(0.5, 1.0) * self.job_seconds)
        else:
            self.run_job(sync=self.rng.random() < 0.5, with_search=True)
        self.check()


def soak(seconds: float, seed: int, ids: int = 300) -> dict[str, int]:
    """Run the soak for ``seconds``; raises AssertionError on the first broken invariant."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="sparsehybrid-soak-") as tmp:
        s = Soak(Path(tmp) / "idx", Path(tmp), rng, ids)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                s.step()
        finally:
            for proc in s.children:  # on a failure: leave nothing behind
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return s.counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ids", type=int, default=300)
    args = ap.parse_args()
    t0 = time.monotonic()
    counts = soak(args.seconds, args.seed, args.ids)
    print(
        json.dumps(
            {"seconds": round(time.monotonic() - t0, 1), "seed": args.seed, "load_average": os.getloadavg(), **counts}
        )
    )


if __name__ == "__main__":
    main()
