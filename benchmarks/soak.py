"""A bounded chaos soak of the embedded store, alone and behind ``sparsehybrid serve`` (issue 23).

For a fixed duration, random steps on one store, each in its own process:

* index jobs and ``--sync`` jobs (in-process ``Indexer`` through ``open_index_sink``, so through
  the service while one owns the store), some killed with ``kill -9`` mid-write, some two at
  once on different documents;
* ``sparsehybrid index`` (the CLI: a Prefect flow with its temporary Prefect API), sometimes
  ``--sync``, sometimes killed with ``kill -9`` or stopped with SIGTERM mid-write (it must exit
  143 within 60 s);
* searches: by a process of their own on the store, or over HTTP while a service owns it; some
  while a job writes;
* ``sparsehybrid tune`` (records a fusion; through the service while one owns the store);
* the service: started, restarted gracefully (SIGTERM), killed with ``kill -9`` (both also
  while a job writes through it; it is started again at once, and the job must follow it), or
  stopped for a while (jobs then open the store directly).

After every step the invariants are checked, through the service's API while one runs (all
points, ``/info`` counts and fusion, searches for a sample of ids) and directly on the store
once the service is down (after each stop or kill, and at the end):

* every acknowledged document (its job exited 0) is present with its latest content, unless a
  later job that was killed touched it (then either version, or absence for a killed sync);
* no duplicates: one point per document (the soak's texts are one chunk each), and the store's
  count (and ``/info``'s documents and points) equals the documents it holds;
* searches return only texts some job wrote for that id, and never fail while a service is up;
* ``tune`` records one of the settings it may choose, and leaves the documents as they were;
  the recorded fusion survives every later job, restart and kill;
* no process is left: jobs, searchers, services and temporary Prefect APIs (the soak is their
  child subreaper, so even an orphaned grandchild is seen) are gone after each step, except the
  running service.

Loopback only. No model weights in jobs: they encode with a stand-in for SPLADE-tiny (log(1+tf)
over SPLADE-tiny's own vocabulary, recorded under its name) beside the store's BM25, so the
collection has the two retrievers ``tune`` needs, and the service, ``tune`` without a service and
CLI jobs load the bundled SPLADE-tiny to serve it. The soak tests the store, not relevance.

Prints a JSON summary (operations by kind, invariant checks, wall time by step, failures,
elapsed, load average); exits 1 on the first broken invariant. ``--plan`` runs given steps first
(the test suite's short runs).

    nice -n 10 python benchmarks/soak.py --seconds 1800 --seed 23
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from sparsehybrid.connectors import service_file

SPARSE_MODEL = "splade-tiny"
WORDS = ["wing", "flutter", "shell", "heat", "inlet", "layer"]

JOB = """
import json, math, sys, time
from collections import Counter
from transformers import AutoTokenizer
from sparsehybrid.connectors import StoreLockedError, open_index_sink
from sparsehybrid.encoders.models import resolve_model
from sparsehybrid.ingestion.indexing import Indexer
from sparsehybrid.types import Document, SparseVector


class StandIn:
    '''SPLADE-tiny's name and vocabulary, log(1 + tf) weights: no model weights to load.'''

    name, max_length = sys.argv[3], 512

    def __init__(self):
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.name)[0])
        self.vocab_size = self.tokenizer.vocab_size

    def encode_document(self, texts):
        out = []
        for text in texts:
            tf = Counter(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            out.append(SparseVector(list(tf), [math.log1p(c) for c in tf.values()]))
        return out

    encode_query = encode_document


spec = json.load(open(sys.argv[2]))
encoder = StandIn()
deadline = time.monotonic() + 60
while True:
    try:
        sink = open_index_sink(sys.argv[1])
        break
    except StoreLockedError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.01)


def on_batch(stats):  # the soak disrupts the job after a chosen batch
    if stats.batches_done == 0:
        print("plan", stats.batches, flush=True)
    else:
        print("batch", flush=True)


docs = [Document(id=i, text=t) for i, t in spec["docs"]]
indexer = Indexer(sink, encoder, bm25=True, batch_size=spec["batch"])
stats = indexer.index(docs, sync=spec["sync"], allow_mass_delete=True, on_batch=on_batch)
sink.close()
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


class InvariantBroken(Exception):
    """One broken invariant: the soak stops and says which."""


def expect(ok: object, message: str) -> None:
    if not ok:
        raise InvariantBroken(message)


def become_subreaper() -> None:
    """Orphans of the soak's children (a killed CLI job's temporary Prefect API) become the
    soak's children instead of init's, so the process check sees them (Linux)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
            table[int(entry)] = (int(fields[1]), fields[0])
    return table


def live_descendants() -> dict[int, str]:
    """The soak's descendants still running (zombies are dead: not counted), with command lines."""
    table = process_table()
    found, frontier = {}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state) in table.items():
            if ppid == parent:
                frontier.append(pid)
                if state != "Z":
                    with contextlib.suppress(OSError):
                        found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return found


def reap_adopted(owned: set[int]) -> None:
    """Wait for dead adopted orphans (not the soak's own ``Popen`` children, whose exit codes
    ``Popen`` must read itself)."""
    for pid, (ppid, state) in process_table().items():
        if ppid == os.getpid() and state == "Z" and pid not in owned:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # CLI jobs start their own
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    return env


class Service:
    """``sparsehybrid serve`` on the soak's store, on a free loopback port."""

    def __init__(self, store_url: str, store_dir: Path, log: Path, spawn):
        self.store_url, self.store_dir, self.log, self.spawn = store_url, store_dir, log, spawn
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.token = ""
        self.http = httpx.Client(timeout=60)

    @property
    def up(self) -> bool:
        return self.proc is not None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = self.spawn(
                [sys.executable, "-m", "sparsehybrid.cli", "serve", "--store", self.store_url, "--port", "0",
                 "--log-level", "warning"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            expect(self.proc.poll() is None, f"the service exited with {self.proc.returncode} while starting")
            expect(time.monotonic() < deadline, "the service was not ready within 180 s")
            info = service_file.read(self.store_dir, check_alive=False)
            if info and info.pid == self.proc.pid:
                with contextlib.suppress(httpx.HTTPError):
                    if self.http.get(f"{info.url}/healthz").json().get("ready"):
                        self.url, self.token = info.url, info.token
                        return
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM: a clean exit (143) that removes its service file."""
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise InvariantBroken("the service did not exit within 60 s of SIGTERM") from None
        self.proc = None
        # 143 = 128 + SIGTERM: stopped as asked (the shell's convention, `serve` since issue 23).
        expect(code == 128 + signal.SIGTERM, f"the service exited with {code} on SIGTERM")
        info = service_file.read(self.store_dir, check_alive=False)
        expect(info is None or info.pid != pid, "the service left its service file behind")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()  # reaped at once: a zombie's pid still looks alive to the service file
        self.proc = None

    def get(self, path: str) -> Any:
        response = self.http.get(self.url + path)
        expect(response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    def post(self, path: str, body: Any, internal: bool = False) -> Any:
        headers = {service_file.WRITE_TOKEN_HEADER: self.token} if internal else {}
        response = self.http.post(self.url + path, json=body, headers=headers)
        expect(response.status_code == 200, f"POST {path}: {response.status_code} {response.text[:200]}")
        return response.json()


#: The steps and their weights in the random choice (service steps only while a service runs).
STEPS = {
    "index": 3, "sync": 2, "search": 3, "kill": 2, "search_during": 2, "two_jobs": 2,
    "cli_index": 1, "cli_kill": 1, "cli_term": 1, "tune": 1,
    "service_toggle": 1, "service_restart": 1, "service_kill9": 1, "restart_during_job": 1, "kill9_during_job": 1,
}  # fmt: skip
#: Steps that need a running service (never chosen at random without one).
SERVICE_STEPS = ("service_restart", "service_kill9", "restart_during_job", "kill9_during_job")


class Soak:
    def __init__(self, work: Path, rng: random.Random, ids: int):
        self.work, self.rng = work, rng
        self.store = work / "idx"
        self.store_url = f"qdrant-edge://{self.store}"
        self.ids = [f"d{i}" for i in range(ids)]
        self.acked: dict[str, str] = {}  # the content every acknowledged job left
        self.maybe: dict[str, set[str | None]] = {}  # ids a killed job touched: also these (None: absent)
        self.written: dict[str, set[str]] = {}  # every text ever sent for an id
        self.fusion: dict[str, Any] | None = None  # what the last tune recorded
        self.version = 0
        self.files = 0
        self.counts: Counter[str] = Counter()
        self.children: list[subprocess.Popen] = []
        self.stderr: dict[int, Path] = {}
        self.step_seconds: Counter[str] = Counter()  # wall time by step (and of the checks)
        self.exit_grace = 10.0  # seconds a process may take to exit after its step
        self.service = Service(self.store_url, self.store, work / "service.log", self.spawn)

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        """A child with its stdout piped and its stderr in a file (a pipe nobody reads while
        the soak waits for a job's first line could fill up and stall the job)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        if "stderr" in kwargs:
            proc = subprocess.Popen(cmd, env=child_env(), text=True, cwd=self.work, **kwargs)
        else:
            path = self.work / f"stderr{len(self.stderr)}.txt"
            with path.open("w") as err:
                proc = subprocess.Popen(cmd, env=child_env(), text=True, cwd=self.work, stderr=err, **kwargs)
            self.stderr[proc.pid] = path
        self.children.append(proc)
        return proc

    def last_error(self, proc: subprocess.Popen) -> str:
        """The last line a failed child wrote to stderr."""
        path = self.stderr.get(proc.pid)
        lines = path.read_text(errors="replace").strip().splitlines() if path else []
        return lines[-1] if lines else "(nothing on stderr)"

    def python(self, code: str, *args: str) -> subprocess.Popen:
        return self.spawn([sys.executable, "-c", code, self.store_url, *args])

    def check_processes(self) -> None:
        """Nothing but the running service outlives a step (a grace for exits under way)."""
        allowed = {self.service.proc.pid} if self.service.proc else set()
        deadline = time.monotonic() + self.exit_grace
        while True:
            for proc in self.children:
                if proc is not self.service.proc:
                    proc.poll()
            reap_adopted({p.pid for p in self.children})
            left = {pid: cmd for pid, cmd in live_descendants().items() if pid not in allowed}
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        expect(not left, f"processes left running: {left}")
        self.children = [p for p in self.children if p is self.service.proc]
        self.counts["check_processes"] += 1

    # -- documents ------------------------------------------------------------------------------
    def text(self, doc_id: str) -> str:
        self.version += 1
        words = " ".join(self.rng.choice(WORDS) for _ in range(6))
        text = f"{doc_id} version {self.version} {words}"
        self.written.setdefault(doc_id, set()).add(text)
        return text

    def choose_docs(self, sync: bool, exclude: Sequence[str] = ()) -> dict[str, str]:
        if sync:
            present = set(self.acked)
            chosen = set(self.rng.sample(self.ids, k=len(self.ids) // 2)) | set(
                self.rng.sample(sorted(present), k=len(present) * 3 // 4)
            )
        else:
            chosen = set(self.rng.sample(self.ids, k=self.rng.randint(1, len(self.ids) // 3))) - set(exclude)
        return {  # sorted: the same seed makes the same texts (a set's order changes with the hash seed)
            i: (self.text(i) if self.rng.random() < 0.6 or i not in self.acked else self.acked[i])
            for i in sorted(chosen)
        }

    def settle(self, docs: dict[str, str], sync: bool, acknowledged: bool) -> None:
        """Record a job's outcome: acknowledged, its content is now required; killed, either."""
        touched = set(self.ids) if sync else set(docs)
        if acknowledged:
            if sync:
                self.acked = {}
            self.acked.update(docs)
            for i in touched:
                self.maybe.pop(i, None)
        else:
            for i in touched:
                options = self.maybe.setdefault(i, set())
                options.add(self.acked.get(i))
                options.add(docs.get(i))  # a killed sync may have deleted it (None) or written it

    # -- steps ----------------------------------------------------------------------------------
    def run_job(self, sync: bool, *, kill: bool = False, during: str | None = None, search: bool = False) -> None:
        """One ``Indexer`` job; ``kill``: kill -9 it mid-write; ``during``: restart or kill -9 the
        service mid-write (and start it again), which the job must survive."""
        docs = self.choose_docs(sync)
        searcher = self.start_searcher() if search else None
        job = self.start_job(docs, sync, batch=5 if kill or during else self.rng.choice([5, 20, 100]))
        assert job.stdout is not None
        if kill or during:  # after a random number of its batches are written, and a little more
            first = job.stdout.readline().split()  # ["plan", batches] (or its result, or nothing: done)
            batches = int(first[1]) if first[:1] == ["plan"] else 0
            for _ in range(self.rng.randrange(batches) if batches else 0):
                job.stdout.readline()
            time.sleep(self.rng.uniform(0, 0.05))
        if kill:
            job.kill()
        elif during == "restart":
            self.service.stop()
            self.counts["service_restart_during_job"] += 1
            self.service.start()
        elif during == "kill9":
            self.service.kill9()
            self.counts["service_kill9_during_job"] += 1
            time.sleep(self.rng.uniform(0, 2))
            self.service.start()
        job.communicate(timeout=600)
        killed = kill and job.returncode == -signal.SIGKILL
        if not killed:
            expect(job.returncode == 0, f"job exited {job.returncode}: {self.last_error(job)}")
        kind = "sync" if sync else "index"
        self.counts[f"kill9_{kind}" if killed else "kill9_missed" if kill else kind] += 1  # missed: it was done
        self.settle(docs, sync, acknowledged=not killed)
        if searcher is not None:
            self.finish_searcher(searcher)
            self.counts["search_during_write"] += 1

    def start_job(self, docs: dict[str, str], sync: bool, batch: int) -> subprocess.Popen:
        self.files += 1
        spec = self.work / f"job{self.files}.json"  # one per job: two jobs may start at once
        spec.write_text(json.dumps({"docs": sorted(docs.items()), "sync": sync, "batch": batch}))
        return self.python(JOB, str(spec), SPARSE_MODEL)

    def run_two_jobs(self) -> None:
        """Two index jobs at once on different documents: both through the service (its writes
        interleave), or one waiting for the other's lock on the store."""
        first = self.choose_docs(sync=False)
        second = self.choose_docs(sync=False, exclude=list(first))
        jobs = [self.start_job(docs, False, batch=self.rng.choice([5, 20])) for docs in (first, second)]
        for job, docs in zip(jobs, (first, second)):
            job.communicate(timeout=600)
            expect(job.returncode == 0, f"job exited {job.returncode}: {self.last_error(job)}")
            self.settle(docs, sync=False, acknowledged=True)
        self.counts["two_jobs"] += 1

    def run_cli_index(self, sync: bool, stop: signal.Signals | None = None) -> None:
        """``sparsehybrid index`` as a user runs it: a Prefect flow on a temporary Prefect API;
        ``stop``: sent mid-write (SIGKILL: with that API running; SIGTERM: the job must stop
        between batches and exit 143 within 60 s, its API stopped)."""
        docs = self.choose_docs(sync)
        self.files += 1
        source = self.work / f"cli{self.files}.jsonl"
        source.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in sorted(docs.items())))
        cmd = [sys.executable, "-m", "sparsehybrid.cli", "index", str(source), "--store", self.store_url]
        cmd += ["--batch-size", str(self.rng.choice([10, 50]))] + (["--sync", "--allow-mass-delete"] if sync else [])
        job = self.spawn(cmd, stderr=subprocess.STDOUT)
        assert job.stdout is not None
        lines = []
        if stop:  # after a random number of its batches are written
            for line in job.stdout:  # "N documents: M to encode in B batches, ..." then "batch i/B written"
                lines.append(line)
                if "to encode in" in line:
                    batches = int(line.split("to encode in")[1].split()[0])
                    lines += [job.stdout.readline() for _ in range(self.rng.randrange(batches) if batches else 0)]
                    break
            time.sleep(self.rng.uniform(0, 0.2))
            job.send_signal(stop)
        t0 = time.monotonic()
        out, _ = job.communicate(timeout=600)
        last = " | ".join(ln.strip() for ln in [*lines, *out.splitlines()][-5:] if ln.strip()) or "(no output)"
        stopped = stop is not None and job.returncode in (-signal.SIGKILL, 128 + signal.SIGTERM)
        if stop == signal.SIGTERM:
            expect(time.monotonic() - t0 < 60, f"sparsehybrid index took {time.monotonic() - t0:.0f} s to stop")
        if not stopped:
            expect(job.returncode == 0, f"sparsehybrid index exited {job.returncode}: {last}")
        outcome = ("_kill9" if stop == signal.SIGKILL else "_term") if stopped else ""
        self.counts[f"cli_{'sync' if sync else 'index'}{outcome}"] += 1
        self.settle(docs, sync, acknowledged=not stopped)

    def start_searcher(self) -> Any:
        if not self.service.up:
            return self.python(SEARCH, "wing flutter", "3")
        found: list[tuple[str, str]] = []
        failures: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    hits = self.service.post("/search", {"query": "wing flutter", "top_k": 20, "explain": False})
                    found.extend((h["doc_id"], h["text"]) for h in hits["hits"])
                except (InvariantBroken, httpx.HTTPError) as exc:
                    failures.append(str(exc))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread, stop, found, failures

    def finish_searcher(self, searcher: Any) -> None:
        if isinstance(searcher, subprocess.Popen):
            out, _ = searcher.communicate(timeout=300)
            expect(searcher.returncode == 0, f"search failed: {self.last_error(searcher)}")
            found = json.loads(out)
        else:
            thread, stop, found, failures = searcher
            stop.set()
            thread.join(60)
            expect(not failures, f"{len(failures)} searches failed during a write through the service: {failures[:1]}")
        for doc_id, text in found:
            expect(text in self.written.get(doc_id, set()), f"search returned a text never written for {doc_id}")

    def search(self) -> None:
        query = self.rng.choice(["wing", "heat inlet", "shell layer flutter"])
        if self.service.up:
            mode = self.rng.choice(["hybrid", "sparse", "bm25"])
            hits = self.service.post("/search", {"query": query, "top_k": 20, "mode": mode, "explain": False})["hits"]
            for h in hits:
                expect(h["text"] in self.written.get(h["doc_id"], set()), f"search returned a text never written for {h['doc_id']}")  # fmt: skip
            self.counts["search_http"] += 1
        else:
            self.finish_searcher(self.python(SEARCH, query, "0"))
            self.counts["search_store"] += 1

    def tune(self) -> None:
        """``sparsehybrid tune`` on judgements of the current content: records a valid setting,
        changes no document."""
        from sparsehybrid.evaluation.fusion_tuning import candidate_settings
        from sparsehybrid.fusion.setting import FusionSetting

        if not self.acked:
            return self.run_job(sync=False)
        folder = self.write_judgements()
        before = self.held()
        proc = self.spawn([sys.executable, "-m", "sparsehybrid.cli", "tune", str(folder), "--store", self.store_url,
                           "--folds", "3", "--seed", str(self.rng.randrange(1000))], stderr=subprocess.STDOUT)  # fmt: skip
        out, _ = proc.communicate(timeout=600)
        expect(proc.returncode == 0, f"tune exited {proc.returncode}: {out.strip().splitlines()[-1:]}")
        recorded = self.service.get("/info")["fusion"] if self.service.up else self.direct_schema().fusion
        expect(recorded is not None, "tune recorded no fusion")
        valid = candidate_settings(["sparse", "bm25"])
        expect(FusionSetting.from_dict(recorded) in valid, f"tune recorded {recorded}, not one of its settings")
        expect(self.held() == before, "tune changed the documents")
        self.fusion = recorded
        self.counts["tune"] += 1

    def write_judgements(self) -> Path:
        """A BEIR folder judging the acknowledged content: a query of two words is relevant to
        the documents holding both."""
        folder = self.work / "judged"
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        docs = sorted(self.acked.items())
        queries, qrels = [], ["query-id\tcorpus-id\tscore"]
        for q in range(12):
            a, b = self.rng.sample(WORDS, 2)
            queries.append({"_id": f"q{q}", "text": f"{a} {b}"})
            qrels += [f"q{q}\t{i}\t{1 + (t.count(a) > 1)}" for i, t in docs if a in t.split() and b in t.split()][:30]
        (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs))
        (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
        (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
        return folder

    # -- the service ----------------------------------------------------------------------------
    def service_restart(self) -> None:
        if not self.service.up:
            return self.service_toggle()
        self.service.stop()
        self.check_store()  # down: read the store directly
        self.service.start()
        self.counts["service_restart"] += 1

    def service_kill9(self) -> None:
        if not self.service.up:
            return self.service_toggle()
        self.service.kill9()
        self.check_store()
        self.service.start()
        self.counts["service_kill9"] += 1

    def service_toggle(self) -> None:
        """Stop the service for a while (jobs open the store directly), or start it again."""
        if self.service.up:
            self.service.stop()
            self.check_store()
            self.counts["service_stop"] += 1
        else:
            self.service.start()
            self.counts["service_start"] += 1

    # -- invariants -----------------------------------------------------------------------------
    def direct_schema(self) -> Any:
        from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

        store = QdrantEdgeStore(self.store)
        try:
            return store.schema
        finally:
            store.close()

    def held(self) -> dict[str, str]:
        """doc_id -> text of every point, through the service if one runs, else directly."""
        if self.service.up:
            payloads = [p["payload"] for p in self.service.post("/store/points", None, internal=True)]
            return self.one_per_document(payloads)
        from sparsehybrid.connectors.qdrant_edge import QdrantEdgeStore

        if not (self.store / "sparsehybrid.json").exists():
            return {}
        store = QdrantEdgeStore(self.store)
        try:
            payloads = [p.payload for p in store.iter_points()]
            count = store.count()
        finally:
            store.close()
        held = self.one_per_document(payloads)
        expect(count == len(held), f"the store counts {count} points but holds {len(held)} documents")
        return held

    def one_per_document(self, payloads: list[dict[str, Any]]) -> dict[str, str]:
        held: dict[str, str] = {}
        for p in payloads:
            expect(p["doc_id"] not in held, f"duplicate {p['doc_id']}")
            held[p["doc_id"]] = p["text"]
        return held

    def check_content(self, held: dict[str, str]) -> None:
        for i in self.ids:
            allowed = self.maybe.get(i, set()) | {self.acked.get(i)}
            expect(held.get(i) in allowed, f"{i}: stored {held.get(i)!r}, allowed {allowed}")

    def check_store(self) -> None:
        """The invariants on the store itself (no service: read by a fresh open in this process)."""
        assert not self.service.up
        held = self.held()
        expect(held or not self.acked, "acknowledged documents but no store")
        self.check_content(held)
        if (self.store / "sparsehybrid.json").exists():
            expect(self.direct_schema().fusion == self.fusion, f"recorded fusion is not what tune recorded: {self.fusion}")  # fmt: skip
        self.counts["check_store"] += 1

    def check_service(self) -> None:
        """The invariants through the service: all points, /info, and searches for some ids."""
        held = self.held()
        self.check_content(held)
        info = self.service.get("/info")
        expect(info["points"] == info["documents"] == len(held), f"/info counts {info['points']} points, {info['documents']} documents; {len(held)} held")  # fmt: skip
        expect(info["fusion"] == self.fusion, f"/info fusion {info['fusion']}, tune recorded {self.fusion}")
        sample = self.rng.sample(self.ids, k=min(32, len(self.ids)))
        if info["points"]:
            body = {"queries": sample, "top_k": 3, "mode": "bm25", "explain": False}
            for doc_id, result in zip(sample, self.service.post("/search/batch", body)["results"]):
                found = [h["text"] for h in result["hits"] if h["doc_id"] == doc_id]
                expect(found == ([held[doc_id]] if doc_id in held else []), f"search for {doc_id} found {found}")
        self.counts["check_service"] += 1

    def check(self) -> None:
        if self.service.up:
            self.check_service()
        else:
            self.check_store()
        self.check_processes()

    def step(self, op: str | None = None) -> None:
        """One step, ``op`` (one of :data:`STEPS`) or a random one, then every check."""
        weights = {k: 0 if k in SERVICE_STEPS and not self.service.up else w for k, w in STEPS.items()}
        weights["service_toggle"] = 1 if self.service.up else 3  # the service runs most of the time
        op = op or self.rng.choices(list(weights), weights=list(weights.values()))[0]
        expect(op in STEPS, f"unknown step {op!r}; steps: {', '.join(STEPS)}")
        t0 = time.monotonic()
        sync = self.rng.random() < 0.5
        if op in ("index", "sync"):
            self.run_job(sync=op == "sync")
        elif op == "search":
            self.search()
        elif op == "kill":
            self.run_job(sync=sync, kill=True)
        elif op == "search_during":
            self.run_job(sync=sync, search=True)
        elif op == "two_jobs":
            self.run_two_jobs()
        elif op in ("cli_index", "cli_kill", "cli_term"):
            self.run_cli_index(sync=sync, stop={"cli_kill": signal.SIGKILL, "cli_term": signal.SIGTERM}.get(op))
        elif op == "tune":
            self.tune()
        elif op in ("restart_during_job", "kill9_during_job"):
            if not self.service.up:
                self.service_toggle()
            self.run_job(sync=sync, during=op.split("_")[0])
        else:
            getattr(self, op)()
        self.step_seconds[op] += time.monotonic() - t0
        t0 = time.monotonic()
        self.check()
        self.step_seconds["checks"] += time.monotonic() - t0

    def finish(self) -> None:
        """The last checks: the service stopped cleanly, the store read directly, nothing left."""
        if self.service.up:
            self.service.stop()
        self.check_store()
        self.check_processes()

    def close(self) -> None:
        """Leave nothing behind, whatever happened."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.service.proc = None
        for pid in live_descendants():  # adopted orphans
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        reap_adopted(set())
        self.service.http.close()


def soak(seconds: float, seed: int, ids: int = 300, service: bool = True, plan: Sequence[str] = ()) -> dict[str, Any]:
    """Run the soak for ``seconds`` (``service``: start with a service owning the store; ``plan``:
    these steps first, in order). Returns the summary; ``failures`` is empty unless an invariant
    broke (the soak then stops)."""
    become_subreaper()
    rng = random.Random(seed)
    t0 = time.monotonic()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sparsehybrid-soak-") as tmp:
        s = Soak(Path(tmp), rng, ids)
        try:
            s.run_job(sync=False)  # the collection exists before a service opens it
            s.check()
            if service:
                s.service_toggle()
                s.check()
            for op in plan:
                s.step(op)
            deadline = t0 + seconds
            while time.monotonic() < deadline:
                s.step()
            s.finish()
        except Exception as exc:  # one line, whatever broke: the summary still comes
            failures.append(str(exc) if isinstance(exc, InvariantBroken) else f"{type(exc).__name__}: {exc}")
            log = (Path(tmp) / "service.log").read_text() if (Path(tmp) / "service.log").exists() else ""
            if log.strip():
                failures.append("service log tail: " + " | ".join(log.strip().splitlines()[-5:]))
        finally:
            s.close()
        if failures:  # keep the store, the service log and every job's stderr to look at
            kept = tempfile.mkdtemp(prefix="sparsehybrid-soak-failed-")
            shutil.copytree(tmp, kept, dirs_exist_ok=True)
            failures.append(f"kept in {kept}")
    ops = {k: v for k, v in sorted(s.counts.items()) if not k.startswith("check")}
    checks = {k: v for k, v in sorted(s.counts.items()) if k.startswith("check")}
    return {
        "seconds": round(time.monotonic() - t0, 1),
        "seed": seed,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "operations": ops,
        "operations_total": sum(ops.values()),
        "checks": checks,
        "checks_total": sum(checks.values()),
        "step_seconds": {k: round(v, 1) for k, v in sorted(s.step_seconds.items())},
        "failures": failures,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ids", type=int, default=300)
    ap.add_argument("--no-service", action="store_true", help="Start without a service (one may start later).")
    ap.add_argument("--plan", default="", help=f"Steps to run first, in order, comma-separated: {', '.join(STEPS)}.")
    args = ap.parse_args()
    plan = [op for op in args.plan.split(",") if op]
    summary = soak(args.seconds, args.seed, args.ids, service=not args.no_service, plan=plan)
    print(json.dumps(summary, indent=1))
    sys.exit(1 if summary["failures"] else 0)


if __name__ == "__main__":
    main()
