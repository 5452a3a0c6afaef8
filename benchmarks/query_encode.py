"""Single-query encoding latency: sentence-transformers' ``encode_query`` vs the fast paths (issue 14).

Both sides are the library's own encoders (``SparseEncoder`` / ``DenseEncoder`` with ``fast=False``
and ``fast=True``) loaded in one process and called alternately, one query at a time, on the same
queries, so a busy neighbour slows both alike. Prints median wall and CPU milliseconds per query
(on a shared machine wall time includes waiting for a core; process CPU time does not) and the
ratios, and checks that both sides return the same vectors. "ours" is what a search uses: SPLADE
and MiniLM queries through ONNX Runtime (``encoders/onnx_export.py``), an inference-free model's
queries through its table (``encoders/static_lookup.py``; a SPLADE-tiny body with a random query
table stands in for one, as none ships offline).

    python benchmarks/query_encode.py --queries ../shared/datasets/cranfield --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", default="../shared/datasets/cranfield", help="A BEIR folder or a text file.")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()

    import numpy as np
    import torch
    from search_latency import load_queries

    from sparsehybrid.encoders.dense import DenseEncoder
    from sparsehybrid.encoders.sparse import SparseEncoder

    if args.threads:
        torch.set_num_threads(args.threads)
    queries = load_queries(args.queries, args.limit)
    inference_free = inference_free_model(tempfile.mkdtemp(prefix="inference-free-"))
    pairs = {
        "sparse (SPLADE-tiny)": (SparseEncoder(fast=False), SparseEncoder()),
        "sparse (inference-free)": (SparseEncoder(inference_free, fast=False), SparseEncoder(inference_free)),
        "dense (all-MiniLM-L6-v2)": (DenseEncoder(fast=False), DenseEncoder()),
    }
    print(
        f"{len(queries)} queries, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}\n"
        f"{'encoder':<26}{'ST wall':>9}{'ours wall':>11}{'ratio':>7}{'ST CPU':>9}{'ours CPU':>10}{'ratio':>7}  ms (median)"
    )
    for label, (reference, fast) in pairs.items():
        for q in queries[:5]:  # warm-up
            reference.encode_query([q]), fast.encode_query([q])
        timings: dict[str, list[tuple[float, float]]] = {"st": [], "ours": []}
        worst = 0.0
        for q in queries:
            outputs = {}
            for name, encoder in (("st", reference), ("ours", fast)):
                c, w = time.process_time(), time.perf_counter()
                outputs[name] = encoder.encode_query([q])[0]
                timings[name].append((time.perf_counter() - w, time.process_time() - c))
            a, b = outputs["st"], outputs["ours"]
            if hasattr(a, "as_dict"):
                da, db = a.as_dict(), b.as_dict()
                worst = max(worst, max((abs(da.get(i, 0) - db.get(i, 0)) for i in da.keys() | db.keys()), default=0))
            else:
                worst = max(worst, 1 - float(np.dot(a, b)))
        wall = {n: statistics.median(t[0] for t in v) * 1000 for n, v in timings.items()}
        cpu = {n: statistics.median(t[1] for t in v) * 1000 for n, v in timings.items()}
        what = "max |diff|" if "sparse" in label else "max 1 - cosine"
        print(
            f"{label:<26}{wall['st']:>9.2f}{wall['ours']:>11.2f}{wall['st'] / wall['ours']:>6.2f}x"
            f"{cpu['st']:>9.2f}{cpu['ours']:>10.2f}{cpu['st'] / cpu['ours']:>6.2f}x  {what} {worst:.2e}"
        )


def inference_free_model(path: str) -> str:
    """SPLADE-tiny's documents with a static query table (random weights: an inference-free model's
    shape, for timing only), saved to ``path``."""
    import torch
    from sentence_transformers import SparseEncoder as STSparseEncoder
    from sentence_transformers.base.modules import Router
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    from sparsehybrid.encoders.models import resolve_model

    mlm = STSparseEncoder(resolve_model("splade-tiny")[0], device="cpu")
    table = torch.rand(len(mlm.tokenizer.get_vocab()), generator=torch.Generator().manual_seed(0))
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=table)], document_modules=[mlm[0], mlm[1]]
    )
    STSparseEncoder(modules=[router], device="cpu").save(path)
    return path


if __name__ == "__main__":
    main()
