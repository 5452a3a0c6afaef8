"""How long re-indexing an unchanged corpus takes, beside the first run, in one process tree.

    python benchmarks/noop_index.py --docs 300

Runs `sparsehybrid index` three times on the first N Cranfield documents into a fresh embedded
store: the first run (encodes everything), an unchanged re-run (the CLI finds nothing to do
without Prefect or models), and an unchanged re-run through the Prefect flow itself
(`run_pipeline`, as a scheduled deployment runs it: no model is loaded when nothing changed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARSEHYBRID_SHARED", REPO.parent / "shared"))

FLOW_RERUN = """
import sys, time
from sparsehybrid.pipelines.config import PipelineConfig
from sparsehybrid.pipelines.flows import run_pipeline
cfg = PipelineConfig.parse({"source": {"path": sys.argv[1]}, "store": sys.argv[2], "models": {"dense": None}})
t = time.perf_counter()
summary = run_pipeline(cfg)
print(f"flow body {time.perf_counter() - t:.2f} s; stages {summary['stages']}")
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "c.jsonl"
        with open(SHARED / "datasets" / "cranfield" / "corpus.jsonl", encoding="utf-8") as fh:
            src.write_text("".join(json.dumps(json.loads(next(fh))) + "\n" for _ in range(args.docs)))
        store = f"qdrant-edge://{tmp}/idx"
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.pop("PREFECT_API_URL", None)
        cli = [sys.executable, "-m", "sparsehybrid.cli", "index", str(src), "--store", store, "--dense-model", "none"]
        first, _ = timed(cli, env)
        again, _ = timed(cli, env)
        flow, out = timed([sys.executable, "-c", FLOW_RERUN, str(src), store], env)
    print(f"{args.docs} documents, SPLADE-tiny, embedded store (wall seconds, whole process)")
    print(f"first run            : {first:6.2f} s")
    print(f"unchanged, CLI       : {again:6.2f} s  ({again / first:.2f} of the first run)")
    print(f"unchanged, Prefect   : {flow:6.2f} s  ({out.strip().splitlines()[-1]})")


if __name__ == "__main__":
    main()
