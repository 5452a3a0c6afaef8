"""Keep an indexing process's heap flat as the corpus grows (glibc's malloc, on Linux).

Why: the encoders run each batch's tensor work on worker threads (fresh ones per call) with
varying shapes; glibc gives threads their own arenas (up to 8 per core) and keeps what they free
for reuse, fragmented, so RSS grew with every batch although nothing was kept: measured on
MS MARCO passages, both default encoders, 64 per batch, ~65 MB per batch for SPLADE alone and up
to ~200 MB for both (2.3 GB peak at 500 documents, 2.8 GB at 1,150). With two arenas and the
free memory handed back after each written batch, RSS after a batch stays flat (~855 MB at every
batch of 1,000 documents). Elsewhere (macOS, musl) both calls do nothing. And the encoders and
an embedded store's build step take turns (:func:`encoding_turn`, :func:`build_step_turn`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform
from collections.abc import Iterator

from .shared_lock import SharedExclusiveLock

#: glibc's ``mallopt`` parameter for the arena count (malloc.h: ``M_ARENA_MAX``).
M_ARENA_MAX = -8
#: Arenas an indexing process keeps: two threads allocate at once without waiting (the encoder's
#: and the writer's), more only fragment.
ARENAS = 2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (once; threads started later share them).
    Returns whether it applied."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, int(arenas)) == 1)


def release_free_memory() -> bool:
    """Hand memory that malloc holds free back to the system (``malloc_trim``): after a batch, its
    tensors and texts are garbage. Returns whether any was released."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)


#: The two memory-heavy phases of an indexing process take turns: encoding a batch (shared: two
#: encoders may run at once) and an embedded store's build step (alone: it waits for the batch
#: being encoded and holds the next one back). Why: the step holds the GIL and ran while the next
#: batch's tensors were live, so the two peaks added up (issue 21: ~1.75 GB at 50,000 documents,
#: where encoding swings ~200 MB and a 30k-point step adds ~400 MB).
_TURNS = SharedExclusiveLock()


def encoding_turn() -> contextlib.AbstractContextManager[None]:
    """Hold while a batch of documents is encoded; waits while a store's build step runs."""
    return _TURNS.shared()


@contextlib.contextmanager
def build_step_turn() -> Iterator[None]:
    """Hold while a store builds (optimizes): no batch is being encoded meanwhile, and what the
    last one freed is handed back to the system first."""
    with _TURNS.exclusive():
        release_free_memory()
        yield
