"""What a service may accept, and who may call it: loopback by default; any other address only
with an API key (a bearer token from the environment)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

API_KEY_ENV = "SPARSEHYBRID_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServiceSettings:
    """Limits and access. ``api_key`` is never shown in reprs or logs."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = field(default=None, repr=False)
    max_top_k: int = 1000
    max_candidates: int = 10_000
    max_batch: int = 64
    #: Request bodies larger than this are refused with 413 (searches; an index job's writes
    #: carry vectors and get ``max_write_bytes``).
    max_body_bytes: int = 1 << 20
    max_write_bytes: int = 256 << 20
    cors_origins: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, host: str = "127.0.0.1", port: int = 8080, **kwargs: object) -> ServiceSettings:
        return cls(host=host, port=port, api_key=os.environ.get(API_KEY_ENV) or None, **kwargs)  # type: ignore[arg-type]

    def check(self) -> None:
        """Refuse settings that would expose the index to a network without a key (one line)."""
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(
                f"binding {self.host} exposes the index beyond this machine: set {API_KEY_ENV} "
                "(clients send it as 'Authorization: Bearer KEY'), or bind 127.0.0.1"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"{API_KEY_ENV} is blank: set a real key (e.g. `openssl rand -hex 32`) or unset it")
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError(f"{API_KEY_ENV} is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")
        if self.max_top_k < 1 or self.max_batch < 1 or self.max_body_bytes < 1024:
            raise ValueError("service limits must be positive (max_body_bytes at least 1024)")
