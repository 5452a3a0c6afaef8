"""Document encoding: sentence-transformers' ``encode_document`` vs the fast paths (issues 6, 14).

Both sides go through :class:`sparsehybrid.encoders.sparse.SparseEncoder` (``--encoder sparse``,
the default) or :class:`sparsehybrid.encoders.dense.DenseEncoder` (``--encoder dense``) with
``fast=False`` / ``fast=True`` on the same texts, so each includes what a user gets: tokenisation, the model, and
conversion to ``SparseVector``s. Each one runs in its own fresh subprocess, one after the other,
which keeps their memory apart and lets us read an honest peak:

* CPU: the process's peak resident set (``VmHWM``) during the timed encode. The high-water mark
  is reset (``/proc/self/clear_refs``) after the model is loaded and warmed up, and the table
  shows how far the peak rose above the resident set just before the encode. Where the reset is
  not allowed, the whole-process peak (``ru_maxrss``, loading included) is shown instead.
* CUDA: ``torch.cuda.max_memory_allocated`` during the timed encode, reset after the warm-up.

Timings are wall-clock for one pass over all texts after a one-batch warm-up; with ``--rounds N``
the encoders alternate N times and the best pass of each counts (other processes on a shared
machine slow whichever pass they overlap; the load average is printed for context).

    python benchmarks/encode.py                       # SPLADE-tiny, Cranfield, 512 documents
    python benchmarks/encode.py --dataset ../shared/datasets/msmarco-5k --limit 1000 --rounds 2
    python benchmarks/encode.py --encoder dense       # all-MiniLM-L6-v2 (the default dense model)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENCODERS = {"st": "sentence-transformers", "fast": "ours (fast path)"}


def load_texts(dataset: Path, limit: int) -> list[str]:
    """The first ``limit`` documents of a BEIR corpus, title and body as the indexer joins them."""
    from sparsehybrid.types import Document

    texts = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            texts.append(Document(id=str(row["_id"]), text=row.get("text", ""), title=row.get("title")).full_text)
            if len(texts) >= limit:
                break
    return texts


# ---------------------------------------------------------------------- worker (one encoder)


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (None where there is none)."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_worker(args: argparse.Namespace) -> None:
    """Load one encoder, warm it up, time one pass, and pickle the results to ``args.result``."""
    import torch

    from sparsehybrid.encoders.dense import DenseEncoder
    from sparsehybrid.encoders.sparse import SparseEncoder

    texts = load_texts(Path(args.dataset), args.limit)
    fast = args.worker == "fast"
    device = None if args.device == "auto" else args.device
    kind = DenseEncoder if args.encoder == "dense" else SparseEncoder
    encoder: Any = kind(args.model, device=device, fast=fast, max_length=args.max_length, batch_size=args.batch_size)
    if fast and encoder._fast is None:
        raise SystemExit(f"the fast path does not cover {args.model} (see the INFO log)")
    lengths = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    n_tokens = sum(len(ids) for ids in lengths)

    encoder.encode_document(texts[: args.batch_size])  # warm-up: one full batch
    on_cuda = encoder.device.startswith("cuda")
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        memory_before = torch.cuda.memory_allocated()
    rss_before = status_kib("VmRSS")
    peak_was_reset = not on_cuda and reset_peak_rss()

    start = time.perf_counter()
    vectors = encoder.encode_document(texts)
    if on_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    if on_cuda:
        peak = torch.cuda.max_memory_allocated()
        memory = {"kind": "CUDA max allocated", "peak_mib": peak / 2**20, "added_mib": (peak - memory_before) / 2**20}
    elif peak_was_reset and rss_before is not None:
        peak = status_kib("VmHWM") or 0
        memory = {"kind": "peak RSS", "peak_mib": peak / 1024, "added_mib": (peak - rss_before) / 1024}
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, loading included
        memory = {"kind": "process max RSS (incl. loading)", "peak_mib": peak / 1024, "added_mib": float("nan")}

    result = {
        "seconds": seconds,
        "n_texts": len(texts),
        "n_tokens": n_tokens,
        "memory": memory,
        "device": encoder.device,
        "threads": torch.get_num_threads(),
        "vectors": vectors if args.encoder == "dense" else [(v.indices, v.values) for v in vectors],
    }
    with open(args.result, "wb") as fh:
        pickle.dump(result, fh)


# ---------------------------------------------------------------------- comparison


def compare(ours: list, theirs: list, k: int) -> tuple[float, int]:
    """(max |diff| over every document and dimension, documents with identical top-k token sets)."""
    max_diff, same_top_k = 0.0, 0
    for (oi, ov), (ti, tv) in zip(ours, theirs):
        mine, ref = dict(zip(oi, ov)), dict(zip(ti, tv))
        for index in mine.keys() | ref.keys():
            max_diff = max(max_diff, abs(mine.get(index, 0.0) - ref.get(index, 0.0)))
        top = lambda d: {i for i, _ in sorted(d.items(), key=lambda t: (-t[1], t[0]))[:k]}  # noqa: E731
        same_top_k += top(mine) == top(ref)
    return max_diff, same_top_k


def compare_dense(ours, theirs) -> float:
    """The smallest cosine between our vector and sentence-transformers' for the same text."""
    import numpy as np

    return float((np.asarray(ours) * np.asarray(theirs)).sum(axis=1).min())


def run_one(kind: str, args: argparse.Namespace, workdir: Path, round_no: int) -> dict:
    result_path = workdir / f"{kind}-{round_no}.pkl"
    command = [
        sys.executable, str(Path(__file__).resolve()),
        "--worker", kind, "--result", str(result_path),
        "--dataset", str(args.dataset), "--model", args.model, "--encoder", args.encoder, "--max-length", str(args.max_length),
        "--batch-size", str(args.batch_size), "--limit", str(args.limit), "--device", args.device,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    subprocess.run(command, check=True, env=env)
    with result_path.open("rb") as fh:
        return pickle.load(fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        default=REPO.parent / "shared" / "datasets" / "cranfield",
        help="BEIR folder with corpus.jsonl (default: ../shared/datasets/cranfield from the repo root)",
    )
    parser.add_argument("--encoder", choices=("sparse", "dense"), default="sparse")
    parser.add_argument("--model", help="model alias, hub id or path (default: splade-tiny / all-MiniLM-L6-v2)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=512, help="documents to encode")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the encoders this many times; the best pass of each counts"
    )
    parser.add_argument("--top-k", type=int, default=10, help="top-k token sets compared per document")
    parser.add_argument("--worker", choices=sorted(ENCODERS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.dataset.is_absolute() and not args.dataset.exists():
        args.dataset = (REPO / args.dataset).resolve()
    if not (args.dataset / "corpus.jsonl").exists():
        parser.error(f"no corpus.jsonl in {args.dataset}")
    if args.model is None:
        args.model = "all-MiniLM-L6-v2" if args.encoder == "dense" else "splade-tiny"
    if args.worker:
        run_worker(args)
        return

    load_start = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {kind: [] for kind in ENCODERS}
    with tempfile.TemporaryDirectory(prefix="sparsehybrid-bench-") as tmp:
        for round_no in range(args.rounds):
            for kind in ENCODERS:
                runs[kind].append(run_one(kind, args, Path(tmp), round_no))
    load_end = os.getloadavg()[0]

    best = {kind: min(results, key=lambda r: r["seconds"]) for kind, results in runs.items()}
    if args.encoder == "dense":
        agreement = (
            f"min cosine to sentence-transformers = {compare_dense(best['fast']['vectors'], best['st']['vectors']):.7f}"
        )
    else:
        max_diff, same_top_k = compare(best["fast"]["vectors"], best["st"]["vectors"], args.top_k)
        agreement = f"max |diff| = {max_diff:.2e}"
    n_texts, n_tokens = best["st"]["n_texts"], best["st"]["n_tokens"]
    memory_kind = best["st"]["memory"]["kind"]

    print(
        f"\nmodel {args.model} | {args.dataset.name}: {n_texts} documents, {n_tokens} tokens "
        f"(mean {n_tokens / n_texts:.0f}) | max length {args.max_length} | batch {args.batch_size} | "
        f"device {best['st']['device']} | torch threads {best['st']['threads']} | "
        f"load average {load_start:.1f} -> {load_end:.1f}"
    )
    header = f"{'encoder':<24}{'docs/s':>9}{'tokens/s':>10}{'seconds':>9}{'rounds (s)':>22}"
    header += f"{'peak MiB':>10}{'+MiB':>8}"
    print(header)
    print("-" * len(header))
    for kind, label in ENCODERS.items():
        r = best[kind]
        all_rounds = ", ".join(f"{x['seconds']:.1f}" for x in runs[kind])
        print(
            f"{label:<24}{n_texts / r['seconds']:>9.1f}{n_tokens / r['seconds']:>10.0f}{r['seconds']:>9.2f}"
            f"{all_rounds:>22}{r['memory']['peak_mib']:>10.0f}{r['memory']['added_mib']:>8.0f}"
        )
    print(f"memory: {memory_kind} during the timed encode; +MiB = rise above the level just before it")
    if args.rounds > 1:
        ratios = [s["seconds"] / f["seconds"] for s, f in zip(runs["st"], runs["fast"])]
        print(f"per-round speedups: {', '.join(f'{x:.2f}x' for x in ratios)} (median {statistics.median(ratios):.2f}x)")
    if args.encoder == "sparse":
        print(f"top-{args.top_k} token sets identical: {same_top_k}/{n_texts} documents")
    ours_rate, st_rate = n_texts / best["fast"]["seconds"], n_texts / best["st"]["seconds"]
    print(
        f"speedup: {ours_rate / st_rate:.1f}x (ours {ours_rate:.1f} docs/s vs sentence-transformers "
        f"{st_rate:.1f} docs/s), {agreement}"
    )


if __name__ == "__main__":
    main()
