"""Peers: sentence-transformers, fastembed and ours on the same texts and weights (issue 14).

Three contenders per encoder, all loaded in one process from the same bundled weights
(SPLADE-tiny for sparse, all-MiniLM-L6-v2 for dense):

* **sentence-transformers**: its own ``SparseEncoder`` / ``SentenceTransformer``, called directly
  (``encode_document`` / ``encode_query``; a sparse result is its torch sparse tensor);
* **fastembed** (ONNX Runtime): the bundled models exported here to ONNX (``torch.onnx.export``,
  MLM logits for SPLADE, ``last_hidden_state`` for MiniLM) into a fastembed model folder
  (``model.onnx`` + tokenizer files + config, cached under ``--work-dir``) and loaded from that
  path. Dense: ``TextEmbedding.add_custom_model`` (mean pooling, normalised) with
  ``specific_model_path``. Sparse: fastembed 0.9 has no ``SparseTextEmbedding.add_custom_model``,
  so the folder is loaded by fastembed's own SPLADE class (``SpladePP``: its tokenizer, ONNX
  Runtime session and ``log1p(relu)`` max-pooling), through a subclass that lists our model;
  nothing of fastembed's pipeline is reimplemented;
* **ours**: :class:`sparsehybrid.encoders.sparse.SparseEncoder` and
  :class:`sparsehybrid.encoders.dense.DenseEncoder` with their defaults, public API only.

Every contender gets the same texts, batch size and truncation length, and as many threads
(``--threads`` for torch; fastembed's ONNX Runtime session gets the same number). Document
throughput: the texts are cut into chunks of ``--chunk`` documents and every chunk is encoded by
each contender in turn, the order rotating from chunk to chunk, so a busy neighbour slows all
alike; the table shows the summed time. Query latency: one query at a time, the contenders
called alternately (rotating order) on each query, median per call. Both are shown as wall time
and as this process's CPU time (on a shared machine wall time includes waiting for a core; CPU
time does not). Agreement with sentence-transformers is checked on every output: the smallest
cosine for dense, the largest absolute difference of any weight for sparse.

    python benchmarks/peers.py --docs ../shared/datasets/msmarco-5k --limit 1000 \\
        --queries ../shared/datasets/cranfield --query-limit 100 --threads 1

Needs the ``peers`` extra (``pip install -e .[peers]``: fastembed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("st", "fastembed", "ours")
LABELS = {"st": "sentence-transformers", "fastembed": "fastembed (ORT)", "ours": "ours"}
#: What each kind of model is exported with: the transformers class and the output kept.
EXPORTS = {"sparse": ("AutoModelForMaskedLM", "logits"), "dense": ("AutoModel", "last_hidden_state")}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "vocab.txt")
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


# ---------------------------------------------------------------------- the fastembed model folder


def _fingerprint(model_dir: Path, kind: str, max_length: int) -> str:
    """What the export depends on: the weight and tokenizer files (name, size, mtime), kind, length."""
    h = hashlib.sha256(f"{kind}:{max_length}".encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def write_fastembed_folder(model_dir: str | Path, out_dir: str | Path, kind: str, max_length: int) -> Path:
    """Export a BERT-style model to a folder fastembed loads from a local path, and return it.

    ``kind`` is ``"sparse"`` (an MLM; the ONNX output is the vocabulary logits, SPLADE pooling is
    fastembed's) or ``"dense"`` (the ONNX output is ``last_hidden_state``; pooling is fastembed's).
    The folder holds ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``,
    dynamic batch and length), the tokenizer files with ``model_max_length = max_length`` (fastembed
    truncates at it) and a ``special_tokens_map.json``. A folder already written for the same
    files, kind and length is reused.
    """
    import torch
    import transformers

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    stamp = {"kind": kind, "max_length": max_length, "source": str(model_dir)}
    stamp["fingerprint"] = _fingerprint(model_dir, kind, max_length)
    stamp_path = out_dir / "peers_export.json"
    if (out_dir / "model.onnx").exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    auto_class, output_name = EXPORTS[kind]
    # eager attention: a plain traceable graph (the SDPA mask helpers do not export with the tracer)
    model = getattr(transformers, auto_class).from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return getattr(out, output_name)

    inputs = ("input_ids", "attention_mask", "token_type_ids")
    example = (
        torch.tensor([[101, 2000, 2001, 102], [101, 2000, 102, 0]]),
        torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        torch.zeros(2, 4, dtype=torch.long),
    )
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the legacy exporter and shape-dependent branches
        torch.onnx.export(
            Wrapper(model),
            example,
            str(out_dir / "model.onnx"),
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_axes={name: axes for name in (*inputs, output_name)},
            opset_version=17,
            dynamo=False,
        )

    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out_dir / name)
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config["model_max_length"] = max_length
    tokenizer_config.pop("max_length", None)  # fastembed truncates at the smaller of the two
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    if not (out_dir / "special_tokens_map.json").exists():
        special = {
            key: tokenizer_config[key] for key in SPECIAL_TOKEN_KEYS if isinstance(tokenizer_config.get(key), str)
        }
        (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    stamp_path.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return out_dir


def load_fastembed(kind: str, folder: Path, name: str, dim_or_vocab: int, threads: int) -> Any:
    """fastembed's model for the exported folder (see the module docstring for how)."""
    from fastembed.common.model_description import ModelSource, PoolingType, SparseModelDescription

    model_name = f"sparsehybrid-peers/{name}"
    if kind == "dense":
        from fastembed import TextEmbedding

        if not any(m["model"] == model_name for m in TextEmbedding.list_supported_models()):
            TextEmbedding.add_custom_model(
                model=model_name,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf=model_name),
                dim=dim_or_vocab,
                model_file="model.onnx",
            )
        return TextEmbedding(
            model_name, specific_model_path=str(folder), threads=threads, cuda=False, local_files_only=True
        )

    from fastembed.sparse.splade_pp import SpladePP

    description = SparseModelDescription(
        model=model_name,
        vocab_size=dim_or_vocab,
        sources=ModelSource(hf=model_name),
        model_file="model.onnx",
        description="SPLADE exported by benchmarks/peers.py",
        license="",
        size_in_GB=0.0,
    )

    class LocalSplade(SpladePP):
        """fastembed's SPLADE model class, listing the exported model instead of its hub models."""

        @classmethod
        def _list_supported_models(cls) -> list[SparseModelDescription]:
            return [description]

    return LocalSplade(model_name, specific_model_path=str(folder), threads=threads, cuda=False, local_files_only=True)


# ---------------------------------------------------------------------- outputs as arrays


def as_rows(kind: str, who: str, output: Any, width: int) -> Any:
    """Every contender's output as a (n, width) float array, for the agreement check."""
    import numpy as np

    if kind == "dense":
        return np.asarray(output if who != "fastembed" else list(output), dtype=np.float32).reshape(-1, width)
    if who == "st":  # a torch sparse (n, vocab) tensor
        return output.to_dense().float().numpy().reshape(-1, width)
    rows = np.zeros((len(output), width), dtype=np.float32)
    for row, vector in zip(rows, output):
        row[np.asarray(vector.indices, dtype=np.int64)] = np.asarray(vector.values, dtype=np.float32)
    return rows


def disagreement(kind: str, ours: Any, reference: Any) -> float:
    """Dense: the smallest cosine (rows are unit vectors); sparse: the largest |difference|."""
    import numpy as np

    if kind == "dense":
        return float((ours * reference).sum(axis=1).min())
    return float(np.abs(ours - reference).max())


# ---------------------------------------------------------------------- the benchmark


def load_texts(dataset: Path, limit: int) -> list[str]:
    from encode import load_texts as load_corpus

    return load_corpus(dataset, limit)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def run_kind(kind: str, args: argparse.Namespace, docs: list[str], queries: list[str], work_dir: Path) -> dict:
    """Load the three contenders for one encoder and measure them; returns the table's numbers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from sparsehybrid.encoders.dense import DenseEncoder
    from sparsehybrid.encoders.models import resolve_model
    from sparsehybrid.encoders.sparse import SparseEncoder

    alias = "splade-tiny" if kind == "sparse" else "all-MiniLM-L6-v2"
    path = resolve_model(alias)[0]
    st: Any = STSparseEncoder(path, device="cpu") if kind == "sparse" else SentenceTransformer(path, device="cpu")
    if args.max_length:
        st.max_seq_length = args.max_length
    max_length = int(st.max_seq_length)
    ours: Any = (SparseEncoder if kind == "sparse" else DenseEncoder)(
        alias, device="cpu", batch_size=args.batch_size, max_length=max_length
    )
    width = ours.vocab_size if kind == "sparse" else ours.dim
    load = time.perf_counter()
    folder = write_fastembed_folder(path, work_dir / "fastembed-models" / f"{alias}-{max_length}", kind, max_length)
    export_s = time.perf_counter() - load
    fe = load_fastembed(kind, folder, alias, width, args.fe_threads)
    bs = args.batch_size

    docs_fn: dict[str, Callable[[Sequence[str]], Any]] = {
        "st": lambda t: st.encode_document(list(t), batch_size=bs),
        "fastembed": lambda t: list(fe.embed(list(t), batch_size=bs)),
        "ours": lambda t: ours.encode_document(list(t)),
    }
    query_fn: dict[str, Callable[[str], Any]] = {
        "st": lambda q: st.encode_query([q]),
        "fastembed": lambda q: list(fe.query_embed(q)),
        "ours": lambda q: ours.encode_query([q]),
    }
    for who in CONTENDERS:  # warm-up: one batch, three queries
        docs_fn[who](docs[:bs])
        for q in queries[:3]:
            query_fn[who](q)

    agreement = {who: (1.0 if kind == "dense" else 0.0) for who in ("fastembed", "ours")}
    worse = min if kind == "dense" else max

    def check(outputs: dict[str, Any]) -> None:
        reference = as_rows(kind, "st", outputs["st"], width)
        for who in ("fastembed", "ours"):
            value = disagreement(kind, as_rows(kind, who, outputs[who], width), reference)
            agreement[who] = worse(agreement[who], value)

    doc_wall = dict.fromkeys(CONTENDERS, 0.0)
    doc_cpu = dict.fromkeys(CONTENDERS, 0.0)
    chunks = [docs[i : i + args.chunk] for i in range(0, len(docs), args.chunk)]
    for n, chunk in enumerate(chunks):
        outputs = {}
        for who in CONTENDERS[n % 3 :] + CONTENDERS[: n % 3]:
            outputs[who], wall, cpu = timed(lambda who=who, chunk=chunk: docs_fn[who](chunk))
            doc_wall[who] += wall
            doc_cpu[who] += cpu
        check(outputs)

    q_wall: dict[str, list[float]] = {who: [] for who in CONTENDERS}
    q_cpu: dict[str, list[float]] = {who: [] for who in CONTENDERS}
    for n, q in enumerate(queries):
        outputs = {}
        for who in CONTENDERS[n % 3 :] + CONTENDERS[: n % 3]:
            outputs[who], wall, cpu = timed(lambda who=who, q=q: query_fn[who](q))
            q_wall[who].append(wall)
            q_cpu[who].append(cpu)
        check(outputs)

    n_tokens = sum(len(ids) for ids in ours.tokenizer(docs, truncation=True, max_length=max_length)["input_ids"])
    return {
        "label": f"{kind} ({alias})",
        "max_length": max_length,
        "mean_tokens": n_tokens / len(docs),
        "export_s": export_s,
        "folder": folder,
        "agreement": agreement,
        "docs_per_s": {who: len(docs) / doc_wall[who] for who in CONTENDERS},
        "docs_per_cpu_s": {who: len(docs) / doc_cpu[who] for who in CONTENDERS},
        "query_ms": {who: statistics.median(v) * 1000 for who, v in q_wall.items()},
        "query_cpu_ms": {who: statistics.median(v) * 1000 for who, v in q_cpu.items()},
        "torch_threads": torch.get_num_threads(),
    }


def print_table(result: dict, kind: str) -> None:
    what = "min cosine" if kind == "dense" else "max |diff|"
    print(
        f"\n{result['label']}: max length {result['max_length']}, documents' mean {result['mean_tokens']:.0f} tokens "
        f"(export + fastembed folder {result['export_s']:.1f} s: {result['folder']})"
    )
    header = f"{'contender':<24}{'docs/s':>9}{'docs/CPU-s':>12}{'query ms':>10}{'query CPU ms':>14}   {what} vs ST (docs+queries)"
    print(header)
    print("-" * len(header))
    for who in CONTENDERS:
        value = result["agreement"].get(who)
        agree = "reference" if value is None else f"{value:.7f}" if kind == "dense" else f"{value:.1e}"
        print(
            f"{LABELS[who]:<24}{result['docs_per_s'][who]:>9.1f}{result['docs_per_cpu_s'][who]:>12.1f}"
            f"{result['query_ms'][who]:>10.2f}{result['query_cpu_ms'][who]:>14.2f}   {agree}"
        )
    for other in ("st", "fastembed"):
        ratio = [
            result["docs_per_s"]["ours"] / result["docs_per_s"][other],
            result["docs_per_cpu_s"]["ours"] / result["docs_per_cpu_s"][other],
            result["query_ms"][other] / result["query_ms"]["ours"],
            result["query_cpu_ms"][other] / result["query_cpu_ms"]["ours"],
        ]
        print(
            f"{'speed ours/' + ('ST' if other == 'st' else 'fastembed'):<24}{ratio[0]:>8.2f}x{ratio[1]:>11.2f}x"
            f"{ratio[2]:>9.2f}x{ratio[3]:>13.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=Path, default=REPO.parent / "shared" / "datasets" / "msmarco-5k", help="BEIR folder")
    ap.add_argument("--limit", type=int, default=1000, help="documents to encode")
    ap.add_argument("--chunk", type=int, default=250, help="documents per call; contenders alternate per chunk")
    ap.add_argument(
        "--queries", default=str(REPO.parent / "shared" / "datasets" / "cranfield"), help="BEIR folder or text file"
    )
    ap.add_argument("--query-limit", type=int, default=100, help="queries, encoded one at a time")
    ap.add_argument("--batch-size", type=int, default=32, help="the same for every contender")
    ap.add_argument(
        "--max-length", type=int, help="truncation length (default: the model's, as sentence-transformers')"
    )
    ap.add_argument("--threads", type=int, help="torch.set_num_threads and fastembed's threads (default: torch's own)")
    ap.add_argument("--encoders", nargs="+", choices=("sparse", "dense"), default=["sparse", "dense"])
    ap.add_argument("--work-dir", type=Path, help="where the ONNX exports are cached (default: a temporary folder)")
    args = ap.parse_args()

    try:
        import fastembed
    except ImportError:
        raise SystemExit("benchmarks/peers.py needs fastembed: pip install -e .[peers]") from None
    import onnxruntime
    import sentence_transformers
    import torch
    from search_latency import load_queries

    if args.threads:
        torch.set_num_threads(args.threads)
    args.fe_threads = torch.get_num_threads()
    docs = load_texts(args.docs, args.limit)
    queries = load_queries(args.queries, args.query_limit)

    with tempfile.TemporaryDirectory(prefix="sparsehybrid-peers-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        load_start = os.getloadavg()
        results = {kind: run_kind(kind, args, docs, queries, work_dir) for kind in args.encoders}
        load_end = os.getloadavg()

    print(
        f"\n{len(docs)} documents from {args.docs.name} in chunks of {args.chunk}, batch {args.batch_size}; "
        f"{len(queries)} queries from {Path(args.queries).name}, one at a time\n"
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), sentence-transformers "
        f"{sentence_transformers.__version__}, fastembed {fastembed.__version__} on onnxruntime "
        f"{onnxruntime.__version__} ({args.fe_threads} threads), {os.cpu_count()} CPUs; load average "
        f"{load_start[0]:.1f} -> {load_end[0]:.1f} (1 min), {load_end[1]:.1f} (5 min)\n"
        "docs/s: wall; docs/CPU-s: per second of this process's CPU time; query: median per call; "
        "speed ours/X > 1 means ours is faster"
    )
    for kind, result in results.items():
        print_table(result, kind)


if __name__ == "__main__":
    main()
