"""Retries with backoff for network stores, and one clear error when a store is down.

Every remote connector wraps its calls in :func:`call_with_retries`: transient failures
(timeouts, connection resets, HTTP 429/502/503/504) are retried with exponential backoff and
full jitter; when the attempts run out the caller gets ONE :class:`StoreUnavailableError` naming
the store (by its credential-free URL) and the last cause, never a chained stack. Messages pass
through :func:`redact` so a secret that leaked into a client's error text is never shown.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .base import StoreUnavailableError

T = TypeVar("T")

#: HTTP statuses worth retrying: rate limited, bad gateway, unavailable, gateway timeout.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: Keep retrying past ``attempts`` until this many seconds have passed since the first try:
    #: full jitter draws a wait anywhere from 0 to its cap, so attempts alone bound the count of
    #: tries but not how long an outage they ride out.
    patience: float = 0.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.patience < 0:
            raise ValueError("retry delays and patience must be >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, cap)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each (non-trivial) secret in ``text`` by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def describe_error(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``TypeName: message``, shortened and with secrets removed: safe for logs and errors."""
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return redact(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__, secrets)


def call_with_retries(
    fn: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    where: str,
    policy: RetryPolicy = RetryPolicy(),
    secrets: Iterable[str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``fn``; retry transient failures; raise :class:`StoreUnavailableError` when exhausted.

    Non-transient errors propagate unchanged (the connector turns them into its own messages).
    ``where`` is the safe (credential-free) store URL used in the message.
    """
    secrets = list(secrets)
    patient_until = clock() + policy.patience
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt >= policy.attempts and clock() >= patient_until:
                last = exc
                break
            sleep(policy.delay(attempt))
    raise StoreUnavailableError(
        f"{where} is unavailable after {attempt} attempt(s): {describe_error(last, secrets)}. "
        "Check that the server is running and reachable, and the URL and credentials."
    ) from None
