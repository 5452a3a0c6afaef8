"""What orchestration and upserting cost: the whole Prefect flow vs the encoders alone.

Both sides chunk and encode the same documents with the same models, batch size and max length;
the flow also reads the source, compares hashes, runs Prefect tasks and writes to the store
(overlapped with encoding). The ratio flow docs/s / encoder-only docs/s is the headline (target
>= 0.9). Run:

    python benchmarks/index.py --docs 300 --dense none
    python benchmarks/index.py --docs 300                     # SPLADE-tiny + MiniLM

The flow uses PREFECT_API_URL when set, otherwise a temporary local API (started before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cranfield"), help="A BEIR folder.")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--sparse", default="splade-tiny")
    ap.add_argument("--dense", default="all-MiniLM-L6-v2", help="'none' to skip.")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    from sparsehybrid.ingestion.sources import open_source
    from sparsehybrid.pipelines.config import PipelineConfig
    from sparsehybrid.pipelines.flows import cached_encoder, run_pipeline
    from sparsehybrid.types import Document

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus.jsonl"
        docs: list[Document] = []
        with open(src, "w", encoding="utf-8") as out:
            for item in open_source(args.dataset):
                if isinstance(item, Document):
                    docs.append(item)
                    out.write(
                        json.dumps({"_id": item.id, "title": item.title, "text": item.text, **item.metadata}) + "\n"
                    )
                if len(docs) == args.docs:
                    break
        cfg = PipelineConfig.parse(
            {
                "source": {"path": str(src)},
                "store": f"qdrant-edge://{tmp}/idx",
                "models": {
                    "sparse": args.sparse,
                    "dense": args.dense,
                    "device": args.device,
                    "max_length": args.max_length,
                    "encode_batch_size": args.batch_size,
                },
                "batch_size": args.batch_size,
            }
        )

        # Warm up: load the models (the flow's encode tasks reuse this process's cache) and
        # start the Prefect API, so neither side is charged for one-off start-up.
        indexer, _ = cached_encoder(cfg.models, cfg.chunk_overlap)
        indexer.encode(indexer.chunk(docs[:4])[0])
        run_pipeline(
            cfg.model_copy(
                update={
                    "store": f"qdrant-edge://{tmp}/warm",
                    "source": cfg.source.model_copy(update={"path": _head(src, Path(tmp) / "warm.jsonl", 4)}),
                }
            )
        )

        t = time.perf_counter()
        n_chunks = 0
        for i in range(0, len(docs), args.batch_size):
            chunk_lists = indexer.chunk(docs[i : i + args.batch_size])
            chunks = [c for cl in chunk_lists for c in cl]
            n_chunks += len(chunks)
            indexer.encode(chunks)
        encoder_s = time.perf_counter() - t

        # The same engine without Prefect: read, hash-compare, chunk, encode, upsert into the
        # embedded store (upserts overlapped with encoding). Separates what upserting costs
        # from what orchestration costs.
        from sparsehybrid.connectors import open_store
        from sparsehybrid.ingestion.indexing import Indexer

        t = time.perf_counter()
        inproc = Indexer(
            open_store(f"qdrant-edge://{tmp}/inproc"), indexer.sparse, indexer.dense, batch_size=args.batch_size
        ).index(open_source(src))
        inproc_s = time.perf_counter() - t

        t = time.perf_counter()
        summary = run_pipeline(cfg)
        flow_s = time.perf_counter() - t

    assert summary["added"] == len(docs) == inproc.added, (summary, inproc.as_dict())
    enc_rate, flow_rate, inproc_rate = len(docs) / encoder_s, len(docs) / flow_s, len(docs) / inproc_s
    print(f"documents: {len(docs)} ({n_chunks} chunks, max_length {args.max_length}, batch {args.batch_size})")
    print(
        f"models: sparse={args.sparse} dense={args.dense} device={indexer.sparse.device if indexer.sparse else indexer.dense.device}"
    )
    print(f"encoder only : {encoder_s:7.2f} s  {enc_rate:7.2f} docs/s")
    print(
        f"in-process   : {inproc_s:7.2f} s  {inproc_rate:7.2f} docs/s  (Indexer into Qdrant Edge, no Prefect; upsert {inproc.upsert_seconds:.2f} s overlapped)"
    )
    print(
        f"whole flow   : {flow_s:7.2f} s  {flow_rate:7.2f} docs/s  (encode tasks {summary['encode_seconds']:.2f} s, write {summary['upsert_seconds']:.2f} s, stages {summary['stages']})"
    )
    print(f"ratio in-process/encoder: {inproc_rate / enc_rate:.3f}  (target >= 0.9: upserts hidden behind encoding)")
    print(f"ratio flow/encoder: {flow_rate / enc_rate:.3f}  (adds Prefect's task and API overhead)")


def _head(src: Path, dst: Path, n: int) -> Path:
    with open(src, encoding="utf-8") as fh:
        dst.write_text("".join(line for _, line in zip(range(n), fh)), encoding="utf-8")
    return dst


if __name__ == "__main__":
    sys.exit(main())
