"""Connection settings for server stores, read from the URL and the environment.

Secrets (API keys, passwords) come from environment variables, never from the URL printed in
logs: ``{PREFIX}_API_KEY``, ``{PREFIX}_USER``, ``{PREFIX}_PASSWORD``. Credentials written into
the URL (``scheme://user:pass@host``) are accepted but stripped from :attr:`safe_url`. The
settings object's repr hides every secret, so it can be logged.

URL query options (all optional), each also settable as ``{PREFIX}_<NAME>`` in the environment
or as a keyword to ``open_store``: ``timeout`` (seconds), ``retries`` (attempts), ``batch_size``
(points per write request), ``ca`` (CA bundle path), ``verify`` (``false`` turns TLS
verification off; on by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .retry import RetryPolicy

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"option {name!r} must be true or false, got {value!r}")


@dataclass
class ConnectionSettings:
    """Where and how to connect; build with :meth:`from_url`."""

    scheme: str
    host: str
    port: int
    tls: bool
    #: Collection (Qdrant) or index (OpenSearch/Elasticsearch) name.
    name: str
    api_key: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    verify: bool = True
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 256
    #: Options the connector understands beyond the common ones.
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def safe_url(self) -> str:
        """The URL without credentials: safe to log, and enough to reopen (secrets come from env).

        Non-secret options that change behaviour (``verify``, ``ca``, connector extras) are kept.
        """
        query = {
            **({"verify": "false"} if not self.verify else {}),
            **({"ca": self.ca_bundle} if self.ca_bundle else {}),
            **self.extra,
        }
        suffix = ("?" + urlencode(sorted(query.items()))) if query else ""
        return f"{self.scheme}://{self.host}:{self.port}/{self.name}{suffix}"

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.password) if s]

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        env_prefix: str,
        default_port: int,
        default_name: str = "sparsehybrid",
        tls_schemes: tuple[str, ...] = (),
        options: Mapping[str, Any] | None = None,
        known_extra: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> ConnectionSettings:
        """Parse ``scheme://[user:pass@]host[:port][/name][?opt=value...]`` plus environment and keywords.

        Precedence: keyword options, then URL query, then ``{env_prefix}_*`` variables.
        """
        env = os.environ if env is None else env
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if not parts.hostname:
            raise ValueError(f"{scheme}:// URL needs a host, e.g. {scheme}://localhost:{default_port}")
        try:
            port = parts.port or default_port
        except ValueError:
            raise ValueError(f"{scheme}:// URL has an invalid port") from None
        opts = _gather_options(scheme, parts.query, options, env, env_prefix, known_extra)
        name = _collection_name(scheme, opts, unquote(parts.path.strip("/")), default_name)
        timeout, attempts, batch_size = _numbers(scheme, opts)

        def setting(key: str) -> str | None:  # an environment variable's value, "" as unset
            return env.get(f"{env_prefix}_{key}") or None

        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=int(port),
            tls=scheme in tls_schemes,
            name=name,
            api_key=setting("API_KEY"),
            user=unquote(parts.username) if parts.username else setting("USER"),
            password=unquote(parts.password) if parts.password else setting("PASSWORD"),
            ca_bundle=opts.pop("ca", None) or setting("CA_BUNDLE"),
            verify=_parse_bool("verify", opts.pop("verify", True)),
            timeout=timeout,
            retry=RetryPolicy(attempts=max(1, attempts)),
            batch_size=batch_size,
            extra={k: str(v) for k, v in opts.items()},
        )


#: Options every connection takes (a backend adds its own ``known_extra``).
_COMMON_OPTIONS = ("timeout", "retries", "batch_size", "ca", "verify", "name")


def _gather_options(
    scheme: str,
    query: str,
    options: Mapping[str, Any] | None,
    env: Mapping[str, str],
    env_prefix: str,
    known_extra: tuple[str, ...],
) -> dict[str, Any]:
    """Keyword options over the URL query over ``{env_prefix}_*`` variables; unknown ones refused."""
    opts: dict[str, Any] = {}
    for key in (*_COMMON_OPTIONS, *known_extra):
        env_value = env.get(f"{env_prefix}_{key.upper()}")
        if env_value not in (None, ""):
            opts[key] = env_value
    opts.update(parse_qsl(query))
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    allowed = {*_COMMON_OPTIONS, "collection", "index", *known_extra}
    unknown = set(opts) - allowed
    if unknown:
        raise ValueError(f"unknown option(s) for {scheme}://: {sorted(unknown)}; known: {sorted(allowed)}")
    return opts


def _collection_name(scheme: str, opts: dict[str, Any], path_name: str, default: str) -> str:
    """``collection=`` / ``index=``, else the URL path, else ``name=``, else ``default`` (the
    naming options are taken out of ``opts``)."""
    named = [opts.pop(key, None) for key in ("collection", "index")]
    fallback = opts.pop("name", None)
    name = named[0] or named[1] or path_name or fallback or default
    if "/" in name or not name.strip():
        raise ValueError(f"{scheme}:// collection/index name {name!r} is invalid")
    return name


def _numbers(scheme: str, opts: dict[str, Any]) -> tuple[float, int, int]:
    """(timeout, attempts, batch_size), taken out of ``opts`` and checked."""
    try:
        timeout = float(opts.pop("timeout", 30.0))
        attempts = int(opts.pop("retries", 5))
        batch_size = int(opts.pop("batch_size", 256))
    except ValueError as exc:
        raise ValueError(f"{scheme}:// option has a bad number: {exc}") from None
    if timeout <= 0 or batch_size < 1:
        raise ValueError(f"{scheme}:// needs timeout > 0 and batch_size >= 1")
    return timeout, attempts, batch_size
