"""Fast SPLADE encoding for MLM-head models: documents (issue 6) and queries (issue 14).

sentence-transformers materialises ``batch × tokens × vocab`` logits (padding included), then
applies relu and log1p to every one of them before max-pooling over tokens. For SPLADE-tiny that
vocabulary projection is nearly all of the work, and most of it is wasted:

* ``log1p ∘ relu`` is monotone, so it commutes with the max: apply it once per (document,
  vocabulary entry) after pooling instead of once per (token, vocabulary entry).
* The decoder bias is the same for every token, so it too is added after the max.
* Padded positions never win the max; length-bucketed batches leave almost none of them, and
  the few left are filled with a copy of a real token of the same document (a duplicate cannot
  change a max), so the projection runs as plain dense matrix products with no masking pass.
* The projection runs in tiles of (documents' tokens × vocabulary chunk) with a running max, so
  peak memory is bounded by the tile, not by ``batch × tokens × vocab``, and on CPU the tile
  stays in cache between the matrix product and the max.

Queries take the same path when the model's query route is its document route (plain SPLADE,
not inference-free): a one-text batch, no worker threads, and one vocabulary tile sized for its
few tokens, which removes sentence-transformers' per-call overhead (~1 ms of arithmetic instead
of several ms). It is self-checked against ``encode_query`` separately.

Everything before the vocabulary projection (encoder body, MLM head transform) runs through the
model's own modules, so any ``*ForMaskedLM`` whose output layer is a plain ``nn.Linear`` works
(BERT, RoBERTa/XLM-R, DistilBERT...), whatever its vocabulary size. A self-check against
sentence-transformers at construction rejects anything that does not reproduce its output.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..types import SparseVector

if TYPE_CHECKING:
    from .onnx_export import OnnxGraph

logger = logging.getLogger(__name__)

#: Prompt names ``encode_document`` / ``encode_query`` look for, in their order.
_PROMPT_NAMES = {"document": ("document", "passage", "corpus"), "query": ("query",)}
#: Texts encoded by both paths when a fast encoder is built: one short, one longer (padding).
#: Lengths from here up are tokenizers' "unlimited" sentinels, not real limits.
_NO_LENGTH_LIMIT = 10**9
_SELF_CHECK_TEXTS = (
    "Supersonic flow over a swept wing.",
    "The boundary layer on a flat plate becomes turbulent downstream of the leading edge, "
    "and heat transfer rises sharply where transition begins.",
)


class _HiddenCaptured(Exception):
    """Raised by the decoder pre-hook to stop the forward pass once its input is known."""

    def __init__(self, hidden):
        super().__init__("decoder input captured")
        self.hidden = hidden


def _splade_pooling_type():
    """SpladePooling's class: sentence-transformers moved it between major versions."""
    try:
        from sentence_transformers.sparse_encoder.modules import SpladePooling
    except ImportError:  # sentence-transformers 5.x
        from sentence_transformers.sparse_encoder.models import SpladePooling  # type: ignore[no-redef]
    return SpladePooling


def _router_type():
    try:
        from sentence_transformers.base.modules import Router
    except ImportError:
        try:
            from sentence_transformers.models import Router  # type: ignore[no-redef]
        except ImportError:
            return None
    return Router


class FastSpladeEncoder:
    """Document encoder for ``Transformer(fill-mask) + SpladePooling(max)`` sparse models.

    Produces the same vectors as ``model.encode_document`` (max abs difference ~1e-6 in fp32)
    several times faster. Build it with :meth:`from_sentence_transformer`, which returns None for
    architectures it does not cover.

    Args:
        model: the sentence-transformers ``SparseEncoder`` (kept for its prompts, its
            ``max_active_dims``, and to put it in eval mode as sentence-transformers does).
        transformer: the document path's Transformer module (tokenizer + ``*ForMaskedLM``).
        activation: SpladePooling's ``activation_function`` (``relu`` or ``log1p_relu``).
        batch_size: texts per forward pass of the encoder body.
        vocab_chunk: vocabulary entries per projection tile (None: whole vocabulary on GPU,
            512 on CPU, where a tile must stay in cache).
        tile_tokens: token rows per projection tile (None: sized from the device).
    """

    def __init__(
        self,
        model,
        transformer,
        *,
        activation: str = "relu",
        batch_size: int = 32,
        vocab_chunk: int | None = None,
        tile_tokens: int | None = None,
    ):
        self.model = model
        self.transformer = transformer
        self.activation = activation
        self.batch_size = max(1, int(batch_size))
        self.vocab_chunk = vocab_chunk
        self.tile_tokens = tile_tokens
        #: Whether :meth:`encode` covers ``task="query"`` (set by :meth:`from_sentence_transformer`).
        self.covers_queries = False
        #: ONNX Runtime graph of the document route (see :mod:`.onnx_export`), and the tasks it runs.
        self.onnx: OnnxGraph | None = None
        self.onnx_tasks: frozenset[str] = frozenset()
        self._references: dict[str, Any] = {}  # sentence-transformers' self-check vectors, per task
        self._capture = threading.local()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sentence_transformer(cls, model, batch_size: int = 32, queries: bool = True) -> FastSpladeEncoder | None:
        """A fast encoder for ``model``'s document path, or None (logged at INFO) if not covered.

        Covered: ``Transformer`` with a fill-mask ``*ForMaskedLM`` whose output embedding is an
        ``nn.Linear``, followed by ``SpladePooling`` with max pooling and a relu-based activation,
        possibly as the document route of a ``Router`` (inference-free SPLADE). Any vocabulary.
        """
        try:
            modules = _document_modules(model)
            reason = _unsupported_reason(modules)
        except Exception as exc:
            reason = f"could not inspect the model ({type(exc).__name__}: {exc})"
        if reason is not None:
            logger.info("fast SPLADE path not used: %s", reason)
            return None
        transformer, pooling = modules
        fast = cls(model, transformer, activation=pooling.activation_function, batch_size=batch_size)
        reason = fast._self_check()
        if reason is not None:
            logger.info("fast SPLADE path not used: %s", reason)
            return None
        reason = _query_route_reason(model, modules)
        if reason is None:
            reason = fast._self_check("query")
        if reason is None:
            fast.covers_queries = True
            if queries:  # an encoder built only for documents skips the graph (~135 MB a model)
                fast._attach_onnx(("query",))
        else:
            logger.info("fast SPLADE path not used for queries: %s", reason)
        return fast

    def _attach_onnx(self, tasks: Sequence[str]) -> None:
        """Run ``tasks`` through an ONNX Runtime export of this model where that reproduces
        sentence-transformers (the same self-check as the torch path); else keep torch."""
        from .onnx_export import attach_checked, splade_graph

        attach_checked(
            self,
            self._decoder().weight.device,
            lambda names: splade_graph(self.transformer, names, self.activation),
            f"splade:{self.activation}",
            tasks,
            lambda: next((r for r in map(self._self_check, tasks) if r is not None), None),
        )

    def _self_check(self, task: str = "document") -> str | None:
        """Encode a few texts both ways; any disagreement means this model is not covered."""
        import torch

        texts = list(_SELF_CHECK_TEXTS)
        max_length = int(self.transformer.max_seq_length or 512)
        try:
            rows: dict[int, Any] = {}
            # One batch: the short text is padded, as in sentence-transformers' batch.
            self._encode_batches(
                texts, max_length, lambda positions, pooled: rows.update(zip(positions, pooled)), workers=1, task=task
            )
            ours = torch.stack([rows[i] for i in range(len(texts))]).float().cpu()
            if task not in self._references:  # sentence-transformers' answer does not change
                reference = self.model.encode_query if task == "query" else self.model.encode_document
                with torch.inference_mode():
                    self._references[task] = (
                        reference(
                            texts, convert_to_tensor=True, convert_to_sparse_tensor=False, show_progress_bar=False
                        )
                        .float()
                        .cpu()
                    )
            theirs = self._references[task]
        except Exception as exc:
            return f"self-check failed to run ({type(exc).__name__}: {exc})"
        if ours.shape != theirs.shape:
            return f"self-check shape mismatch: {tuple(ours.shape)} vs sentence-transformers {tuple(theirs.shape)}"
        if self._decoder().weight.dtype in (torch.float32, torch.float64):
            atol = 1e-4
        else:  # half precision: both paths round logits to ~3 significant digits, in different orders
            atol = 2e-2 * max(1.0, float(theirs.abs().max()))
        diff = float((ours - theirs).abs().max())
        if not diff <= atol:
            return f"self-check disagrees with sentence-transformers (max |diff| = {diff:.3g} > {atol:.3g})"
        return None

    # ------------------------------------------------------------------ public API

    def encode(self, texts: list[str], max_length: int, task: str = "document") -> list[SparseVector]:
        """Sparse vectors, as ``model.encode_document(texts)`` (or ``encode_query`` for
        ``task="query"``, only where :attr:`covers_queries`) with that max length.

        Texts longer than ``max_length`` tokens are truncated exactly as sentence-transformers
        truncates them (callers chunk first; this is only a safeguard). Only positive weights are
        kept; a text whose vector is all zero gets an empty :class:`SparseVector`.
        """
        if not texts:
            return []
        vectors: list[SparseVector] = [None] * len(texts)  # type: ignore[list-item]  # every slot is filled

        def store(positions: list[int], pooled) -> None:
            for position, vector in zip(positions, _rows_to_sparse(pooled)):
                vectors[position] = vector

        if task == "query" and not self.covers_queries:
            raise ValueError("this model's query path is not covered by the fast path (see covers_queries)")
        self._encode_batches(list(texts), max_length, store, task=task)
        return vectors

    # ------------------------------------------------------------------ internals

    def _decoder(self):
        return self.transformer.auto_model.get_output_embeddings()

    def _encode_batches(
        self,
        texts: list[str],
        max_length: int,
        sink: Callable[[list[int], Any], None],
        workers: int | None = None,
        task: str = "document",
    ) -> None:
        """Encode in length-bucketed batches; ``sink(positions, pooled)`` receives each batch's
        (batch × vocab) SPLADE weights with the texts' positions in ``texts``.

        Each batch is handed over as soon as it is pooled, so memory holds a few batches of
        vocabulary-wide rows, never one row per text. ``sink`` may run on worker threads
        (``workers``: default one per torch thread on CPU, see :func:`_run_single_threaded_workers`).
        """
        import torch

        tokenizer = self.transformer.tokenizer
        ids, token_types, order = tokens_longest_first(self.transformer, self.model, texts, max_length, task)

        decoder = self._decoder()
        device = decoder.weight.device
        onnx = self.onnx if task in self.onnx_tasks else None
        workers = 1 if onnx is not None else workers or _cpu_workers(device, len(texts))
        batch_size = min(self.batch_size, -(-len(texts) // workers))  # every worker gets a batch
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        if self.model.training or self.transformer.training:
            self.model.eval()  # as sentence-transformers' encode does: no dropout (a walk over every module)

        max_active_dims = getattr(self.model, "max_active_dims", None)

        def encode_batch(batch: list[int]) -> None:
            features = batch_features(tokenizer, ids, token_types, batch, device)
            with torch.inference_mode():  # thread-local: each worker enters it itself
                array = onnx.run(features) if onnx is not None else None
                if array is not None:
                    pooled = torch.from_numpy(array)
                else:
                    pooled = self._pool(self._hidden_states(features), features["attention_mask"])
                if max_active_dims:
                    pooled = _keep_top_k(pooled, int(max_active_dims))
                sink(batch, pooled)

        with self._decoder_capture(decoder):
            run_batches(encode_batch, batches, workers)

    @contextmanager
    def _decoder_capture(self, decoder):
        """While active, a forward pass of the MLM model stops at the output layer (see below)."""
        capture = self._capture

        def grab(module, args):
            if getattr(capture, "active", False):
                raise _HiddenCaptured(args[0])

        handle = decoder.register_forward_pre_hook(grab)
        try:
            yield
        finally:
            handle.remove()

    def _hidden_states(self, features: dict[str, Any]):
        """The decoder's input (batch × tokens × hidden): the model's own body and head transform.

        The Transformer module runs as sentence-transformers runs it; the pre-hook installed by
        :meth:`_decoder_capture` grabs the output layer's input and stops the pass there, so the
        vocabulary-sized logits are never built. The hook acts only in threads that set the
        thread-local flag, so a concurrent ``encode_query`` in another thread is unaffected.
        """
        self._capture.active = True
        try:
            self.transformer(dict(features, modality="text"))
        except _HiddenCaptured as captured:
            return captured.hidden
        finally:
            self._capture.active = False
        raise RuntimeError("the MLM model never called its output embedding layer")

    def _tile_sizes(self, vocab: int, device, element_size: int) -> tuple[int, int]:
        """(vocab chunk, token rows) per projection tile.

        CPU: a 512-entry vocabulary chunk times 1024 tokens (2 MiB of fp32 logits) stays in the
        last-level cache between the matrix product and the max. GPU: the whole vocabulary, with
        token rows bounded so a tile of logits stays under ~256 MiB.
        """
        if device.type == "cpu":
            vocab_chunk = self.vocab_chunk or 512
            tile_tokens = self.tile_tokens or 1024
        else:
            vocab_chunk = self.vocab_chunk or vocab
            tile_tokens = self.tile_tokens or max(64, (256 << 20) // (vocab_chunk * element_size))
        return min(vocab_chunk, vocab), max(1, tile_tokens)

    def _pool(self, hidden, attention_mask):
        """Max over each document's real tokens of (hidden · decoderᵀ), then bias and activation."""
        import torch

        decoder = self._decoder()
        weight, bias = decoder.weight, decoder.bias
        batch, _, hidden_size = hidden.shape
        hidden = hidden.to(weight.dtype)
        mask = attention_mask.bool()
        vocab = weight.shape[0]
        vocab_chunk, tile_tokens = self._tile_sizes(vocab, weight.device, weight.element_size())
        if 0 < batch * hidden.shape[1] < tile_tokens:
            # A short batch (a query): one tile of all its tokens, the vocabulary in fewer, wider
            # chunks (same logits buffer size), so the few matrix products are not call overhead.
            budget = vocab_chunk * tile_tokens
            tile_tokens = batch * hidden.shape[1]
            vocab_chunk = min(vocab, budget // tile_tokens)
        weight_chunks = weight.split(vocab_chunk)
        pooled = torch.empty((batch, vocab), dtype=weight.dtype, device=weight.device)
        logits_buffer = torch.empty(tile_tokens * vocab_chunk, dtype=weight.dtype, device=weight.device)

        # Padded positions take the value of the document's first real token: a duplicate never
        # changes a max, so tiles need no masking. Works for left or right padding.
        first_real = mask.to(torch.int8).argmax(dim=1)
        anchor = hidden[torch.arange(batch, device=hidden.device), first_real]
        hidden = torch.where(mask.unsqueeze(-1), hidden, anchor.unsqueeze(1))
        lengths = mask.sum(dim=1).tolist()

        for d0, d1, c0, c1, first_window in _tiles(mask, lengths, tile_tokens):
            rows = hidden[d0:d1, c0:c1].reshape(-1, hidden_size)
            n_docs, n_cols = d1 - d0, c1 - c0
            v0 = 0
            for chunk in weight_chunks:
                v1 = v0 + chunk.shape[0]
                logits = logits_buffer[: rows.shape[0] * chunk.shape[0]].view(rows.shape[0], chunk.shape[0])
                torch.mm(rows, chunk.t(), out=logits)
                target = pooled[d0:d1, v0:v1]
                if first_window:
                    torch.amax(logits.view(n_docs, n_cols, -1), dim=1, out=target)
                else:
                    torch.maximum(target, logits.view(n_docs, n_cols, -1).amax(dim=1), out=target)
                v0 = v1

        if bias is not None:
            pooled += bias
        pooled.relu_().log1p_()
        if self.activation == "log1p_relu":
            pooled.log1p_()
        empty = [row for row, n in enumerate(lengths) if n == 0]
        if empty:  # no real token at all (a tokenizer without special tokens, empty text)
            pooled[empty] = 0
        return pooled


# ---------------------------------------------------------------------- helpers


def tokens_longest_first(transformer, model, texts: list[str], max_length: int, task: str):
    """Token ids (and token type ids, or None) of ``texts`` as sentence-transformers would make
    them for ``task``, with the positions ordered longest first (a batch then holds texts of
    similar length; sentence-transformers sorts too)."""
    # sentence-transformers prefers a per-task length over the module's max length. Some
    # tokenizers report a sentinel (1e30) for "no limit": truncate at the model's own limit then.
    length = getattr(transformer, f"{task}_length", None) or int(max_length)
    if length >= _NO_LENGTH_LIMIT:
        length = None
    prompt = task_prompt(model, task)
    if prompt:
        texts = [prompt + t for t in texts]
    ids, token_types = _tokenize(transformer.tokenizer, texts, length)
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
    return ids, token_types, order


#: Per tokenizer object (weakly: a tokenizer that is gone takes its copies with it, and a new one
#: at the same address never finds them), its Rust copies by truncation length.
_BACKENDS: weakref.WeakKeyDictionary[Any, dict[int | None, Any]] = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def _tokenize(tokenizer, texts: list[str], length: int | None):
    """``tokenizer(texts, truncation="longest_first", max_length=length)``'s ids and token type
    ids (None where the tokenizer makes none), through the Rust tokenizer directly when there is
    one: the transformers wrapper re-configures truncation and converts outputs on every call,
    a third of a millisecond that a one-query search pays each time."""
    backend = _backend(tokenizer, length)
    if backend is None:
        encoded = tokenizer(texts, truncation="longest_first", max_length=length, return_attention_mask=False)
        return encoded["input_ids"], encoded.get("token_type_ids")
    encodings = backend.encode_batch(texts)
    ids = [e.ids for e in encodings]
    token_types = [e.type_ids for e in encodings] if "token_type_ids" in tokenizer.model_input_names else None
    return ids, token_types


def _backend(tokenizer, length: int | None):
    """A copy of ``tokenizer``'s Rust tokenizer set to truncate at ``length`` without padding, or
    None when it has none or the copy does not tokenize as the tokenizer itself (checked once)."""
    with _BACKENDS_LOCK:
        try:
            known = _BACKENDS.get(tokenizer, {})
        except TypeError:  # a tokenizer that cannot be weakly referenced: the wrapper it is
            return None
        if length in known:
            return known[length]
    backend = None
    rust = getattr(tokenizer, "_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if rust is not None:
        try:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(rust.to_str())
            backend.no_padding()
            if length is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(length, strategy="longest_first")
            probe = [*_SELF_CHECK_TEXTS, "", "x " * 600, "Übergang — naïve café 12.5%"]
            expected = tokenizer(probe, truncation="longest_first", max_length=length, return_attention_mask=False)
            got = backend.encode_batch(probe)
            if [e.ids for e in got] != expected["input_ids"] or (
                "token_type_ids" in expected and [e.type_ids for e in got] != expected["token_type_ids"]
            ):
                backend = None
        except Exception:
            backend = None
    with _BACKENDS_LOCK:
        _BACKENDS.setdefault(tokenizer, {})[length] = backend
    return backend


def batch_features(tokenizer, ids, token_types, batch: list[int], device) -> dict[str, Any]:
    """The padded model inputs of the texts at positions ``batch``, on ``device``."""
    features = _pad_batch(
        tokenizer,
        [ids[i] for i in batch],
        {"token_type_ids": [token_types[i] for i in batch]} if token_types is not None else {},
    )
    return {key: tensor.to(device) for key, tensor in features.items()}


def sample_features(transformer, model) -> dict[str, Any]:
    """The self-check texts as one padded query batch: the sample an ONNX export is traced on."""
    max_length = int(transformer.max_seq_length or 512)
    ids, token_types, order = tokens_longest_first(transformer, model, list(_SELF_CHECK_TEXTS), max_length, "query")
    return batch_features(transformer.tokenizer, ids, token_types, order, "cpu")


def run_batches(fn, batches: list, workers: int) -> None:
    """``fn`` on every batch: in this thread, or on single-threaded workers."""
    if workers == 1:
        for batch in batches:
            fn(batch)
    else:
        _run_single_threaded_workers(fn, batches, workers)


def task_prompt(model, task: str = "document") -> str | None:
    """The prompt sentence-transformers' ``encode_document`` / ``encode_query`` would prepend
    (None or "" for most models): the task's named prompt, else the model's default prompt."""
    prompts = getattr(model, "prompts", None) or {}
    for name in _PROMPT_NAMES[task]:
        if name in prompts:
            return prompts[name]
    default = getattr(model, "default_prompt_name", None)
    return prompts.get(default) if default is not None else None


def _document_modules(model) -> list:
    """The modules ``encode_document`` runs: a Router's document route, else the whole model."""
    return _route_modules(model, "document")


def _route_modules(model, task: str) -> list:
    """The modules ``encode_<task>`` runs: a Router's route for ``task``, else the whole model."""
    modules = list(model.children()) if hasattr(model, "children") else list(model)
    router_type = _router_type()
    if modules and router_type is not None and isinstance(modules[0], router_type):
        router = modules[0]
        route = router._resolve_route(task=task, modality="text")
        modules = list(router.sub_modules[route]) + modules[1:]
    return modules


def _query_route_reason(model, document_modules: list) -> str | None:
    """Why ``encode_query`` runs other modules than ``encode_document`` (None: the same ones)."""
    modules = _route_modules(model, "query")
    if len(modules) != len(document_modules) or any(a is not b for a, b in zip(modules, document_modules)):
        return f"the query route ({[type(m).__name__ for m in modules]}) differs from the document route"
    if getattr(document_modules[0], "query_expansion", None):
        return "the Transformer expands queries"
    return None


def _unsupported_reason(modules: Sequence) -> str | None:
    """Why these modules are outside the fast path, or None if they are covered."""
    import torch

    names = [type(m).__name__ for m in modules]
    if len(modules) != 2:
        return f"expected Transformer + SpladePooling on the document path, got {names}"
    transformer, pooling = modules
    if type(pooling) is not _splade_pooling_type():
        return f"second module is {names[1]}, not SpladePooling"
    if pooling.pooling_strategy != "max":
        return f"SpladePooling pooling_strategy={pooling.pooling_strategy!r} (only 'max' commutes with the activation)"
    if pooling.activation_function not in ("relu", "log1p_relu"):
        return f"SpladePooling activation_function={pooling.activation_function!r}"
    if names[0] not in ("Transformer", "MLMTransformer") or not hasattr(transformer, "auto_model"):
        return f"first module is {names[0]}, not a Transformer"
    task = getattr(transformer, "transformer_task", "fill-mask")
    if task != "fill-mask":
        return f"Transformer task is {task!r}, not 'fill-mask'"
    if getattr(transformer, "backend", "torch") != "torch":
        return f"Transformer backend is {transformer.backend!r}, not torch"
    modality_config = getattr(transformer, "modality_config", None)
    if modality_config is not None and set(modality_config) != {"text"}:
        return f"Transformer modalities are {sorted(map(str, modality_config))}, not text only"
    if getattr(transformer, "processing_kwargs", None):
        return "Transformer has custom processing_kwargs"
    tokenizer = getattr(transformer, "tokenizer", None)
    if tokenizer is None or not callable(tokenizer):
        return "Transformer has no tokenizer"
    auto_model = transformer.auto_model
    if not type(auto_model).__name__.endswith("ForMaskedLM"):
        return f"model class {type(auto_model).__name__} is not a *ForMaskedLM"
    decoder = auto_model.get_output_embeddings()
    if not isinstance(decoder, torch.nn.Linear):
        return f"output embedding layer is {type(decoder).__name__}, not nn.Linear"
    return None


def _cpu_workers(device, n_texts: int) -> int:
    """Batch-level worker threads: torch's intra-op thread count on CPU, one elsewhere."""
    import torch

    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), n_texts))


def _run_single_threaded_workers(fn, items: list, workers: int) -> None:
    """Run ``fn`` over ``items`` on ``workers`` threads, each with single-threaded torch ops.

    Why not torch's own intra-op threads: the projection is thousands of few-millisecond matrix
    products, and an OpenMP barrier after each one stalls whenever a core is busy with anything
    else (measured: 4-10x slower on a shared 2-core machine). Whole batches per thread need no
    barrier and use every core. torch's thread count is process-wide, so it is set to 1 for the
    duration and restored; threads started here read it when they first run a torch op.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="splade-fast") as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()
    finally:
        torch.set_num_threads(previous)


def _pad_batch(tokenizer, input_ids: list[list[int]], extra: dict[str, list[list[int]]]) -> dict[str, Any]:
    """Pad one batch as the tokenizer would (its padding side and pad ids), as int64 tensors
    (built in numpy and shared with torch: ONNX Runtime takes them without a copy)."""
    import numpy as np
    import torch

    width = max(len(ids) for ids in input_ids)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_values = {
        "input_ids": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
    }
    columns = {"input_ids": input_ids, **extra}
    features = {key: np.full((len(input_ids), width), pad_values.get(key, 0), dtype=np.int64) for key in columns}
    attention_mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, ids in enumerate(input_ids):
        span = slice(width - len(ids), width) if left else slice(0, len(ids))
        attention_mask[row, span] = 1
        for key, values in columns.items():
            features[key][row, span] = values[row]
    features["attention_mask"] = attention_mask
    return {key: torch.from_numpy(array) for key, array in features.items()}


def _tiles(mask, lengths: list[int], tile_tokens: int):
    """Yield (first doc, end doc, first column, end column, is first window) tiles covering
    every real token.

    Documents arrive longest first; a tile takes consecutive documents while
    ``count × longest ≤ tile_tokens`` and spans only the columns where they have real tokens.
    A document longer than a tile is split into column windows (pooled with a running max).
    """
    batch = len(lengths)
    d0 = 0
    while d0 < batch:
        if lengths[d0] == 0:  # nothing to pool; the caller zeroes the row
            d0 += 1
            continue
        longest = lengths[d0]
        d1 = d0 + 1
        while d1 < batch and lengths[d1] > 0 and (d1 - d0 + 1) * max(longest, lengths[d1]) <= tile_tokens:
            longest = max(longest, lengths[d1])
            d1 += 1
        columns = mask[d0:d1].any(dim=0).nonzero().flatten()
        c_start, c_end = int(columns[0]), int(columns[-1]) + 1
        window = max(1, tile_tokens // (d1 - d0))
        for c0 in range(c_start, c_end, window):
            yield d0, d1, c0, min(c0 + window, c_end), c0 == c_start
        d0 = d1


def _keep_top_k(pooled, k: int):
    """Keep each row's k largest weights (sentence-transformers' ``max_active_dims``)."""
    import torch

    if k >= pooled.shape[1]:
        return pooled
    values, indices = pooled.topk(k, dim=1)
    return torch.zeros_like(pooled).scatter_(1, indices, values)


def _rows_to_sparse(pooled) -> list[SparseVector]:
    """One SparseVector of the strictly positive entries per row."""
    import numpy as np
    import torch

    if pooled.device.type == "cpu":  # numpy's nonzero is several times cheaper on one query's row
        array = pooled.float().numpy()
        rows, cols = np.nonzero(array > 0)
        values = array[rows, cols].tolist()
        counts = np.bincount(rows, minlength=array.shape[0]).tolist()
        ids = cols.tolist()
    else:
        rows_t, cols_t = torch.nonzero(pooled > 0, as_tuple=True)
        values = pooled[rows_t, cols_t].float().cpu().tolist()
        counts = torch.bincount(rows_t, minlength=pooled.shape[0]).tolist()
        ids = cols_t.cpu().tolist()
    vectors, start = [], 0
    for count in counts:
        vectors.append(SparseVector(ids[start : start + count], values[start : start + count]))
        start += count
    return vectors
