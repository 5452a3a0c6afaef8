"""The shared retry helper: transient failures are retried with bounded jittered backoff."""

from __future__ import annotations

import pytest

from sparsehybrid.connectors import StoreUnavailableError
from sparsehybrid.connectors.connection import ConnectionSettings
from sparsehybrid.connectors.retry import RetryPolicy, call_with_retries, redact


def test_transient_failures_are_retried_then_succeed():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("read timed out")
        return "ok"

    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=1.0)
    assert (
        call_with_retries(
            flaky, is_transient=lambda e: isinstance(e, TimeoutError), where="x://h", policy=policy, sleep=sleeps.append
        )
        == "ok"
    )
    assert len(calls) == 3 and len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_exhausted_retries_give_one_error_without_secret_or_chain():
    def down():
        raise ConnectionError("refused for token s3cr3t-token")

    with pytest.raises(StoreUnavailableError) as info:
        call_with_retries(
            down,
            is_transient=lambda e: True,
            where="x://h:1/c",
            policy=RetryPolicy(attempts=3),
            secrets=["s3cr3t-token"],
            sleep=lambda s: None,
        )
    assert "x://h:1/c" in str(info.value) and "3 attempt" in str(info.value) and "***" in str(info.value)
    assert "s3cr3t-token" not in str(info.value) and info.value.__cause__ is None and info.value.__suppress_context__


def test_non_transient_errors_are_not_retried():
    calls = []

    def bad():
        calls.append(1)
        raise ValueError("bad request")

    with pytest.raises(ValueError):
        call_with_retries(bad, is_transient=lambda e: False, where="x://h", sleep=lambda s: None)
    assert calls == [1]


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=4.0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 4.0)]:
        assert all(0 <= policy.delay(attempt) <= cap for _ in range(50))
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    assert redact("a KEY b", ["KEY", None, ""]) == "a *** b"


def test_settings_from_url_env_and_keywords():
    env = {"X_API_KEY": "k-123456", "X_TIMEOUT": "7", "X_CA_BUNDLE": "/etc/ca.pem"}
    s = ConnectionSettings.from_url(
        "xs://host.example/coll?retries=3",
        env_prefix="X",
        default_port=1234,
        tls_schemes=("xs",),
        env=env,
        options={"batch_size": 10},
    )
    assert (s.host, s.port, s.name, s.tls, s.timeout, s.retry.attempts, s.batch_size, s.ca_bundle) == (
        "host.example",
        1234,
        "coll",
        True,
        7.0,
        3,
        10,
        "/etc/ca.pem",
    )
    assert (
        s.api_key == "k-123456"
        and "k-123456" not in repr(s)
        and s.safe_url == "xs://host.example:1234/coll?ca=%2Fetc%2Fca.pem"
    )
    u = ConnectionSettings.from_url("x://bob:pw%40rd@h:99?verify=false", env_prefix="X", default_port=1, env={})
    assert (u.user, u.password, u.verify, u.name) == ("bob", "pw@rd", False, "sparsehybrid") and "pw@rd" not in repr(
        u
    ) + u.safe_url
    for bad in ["x://h?verify=maybe", "x://h?timeout=-1", "x://h?nope=1", "x://?a=1"]:
        with pytest.raises(ValueError):
            ConnectionSettings.from_url(bad, env_prefix="X", default_port=1, env={})
