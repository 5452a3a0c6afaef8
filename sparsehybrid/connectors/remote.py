"""Stores behind a network client share one way to call it: retried, then one clear error."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TypeVar

from .base import StoreError, VectorStore
from .retry import RetryPolicy, call_with_retries, describe_error

T = TypeVar("T")


class RemoteStore(VectorStore):
    """A :class:`VectorStore` whose every request goes through :meth:`_call`.

    Transient failures (timeouts, resets, 429/502/503/504) are retried with jittered backoff;
    whatever still fails becomes one :class:`StoreError` naming the store and the request, with
    every secret redacted, so callers and logs never see a client library's traceback.
    """

    @property
    @abc.abstractmethod
    def retry_policy(self) -> RetryPolicy: ...

    @property
    @abc.abstractmethod
    def secrets(self) -> list[str]:
        """Values that must never appear in an error message (API keys, passwords)."""

    @abc.abstractmethod
    def _is_transient(self, exc: BaseException) -> bool: ...

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return call_with_retries(
                fn, is_transient=self._is_transient, where=self.url, policy=self.retry_policy, secrets=self.secrets
            )
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.url}: {what} failed: {describe_error(exc, self.secrets)}") from None
