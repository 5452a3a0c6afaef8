"""Secrets: API keys and passwords from the environment never show up in logs, exceptions, reprs
or URLs; TLS verification is on by default; filters are validated before they reach a store."""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparsehybrid.connectors import StoreError, open_store
from sparsehybrid.connectors.filters import FilterError, parse_filter
from tests.support import free_port

SECRET_ENV = {
    "QDRANT_API_KEY": "qk-PLANTED-3b9f1c",
    "OPENSEARCH_USER": "admin",
    "OPENSEARCH_PASSWORD": "os-PLANTED-77e2aa",
    "ELASTICSEARCH_API_KEY": "es-PLANTED-c0ffee",
    "ELASTICSEARCH_PASSWORD": "esp-PLANTED-15deaf",
}
SECRETS = [v for k, v in SECRET_ENV.items() if not k.endswith("_USER")]


def test_planted_secrets_never_appear_in_output_errors_or_reprs(monkeypatch, caplog, capsys):
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    caplog.set_level(logging.DEBUG)  # every library's debug logging too (urllib3, httpx, elastic_transport...)
    seen: list[str] = []
    port = free_port()
    urls = [
        f"opensearch://127.0.0.1:{port}/idx?retries=2&timeout=1",
        f"opensearchs://127.0.0.1:{port}/idx?retries=2&timeout=1",
        f"elasticsearch://127.0.0.1:{port}/idx?retries=2&timeout=1",
        f"elasticsearchs://127.0.0.1:{port}/idx?retries=2&timeout=1",
        f"opensearch://bob:url-PLANTED-pw@127.0.0.1:{port}/idx?retries=1&timeout=1",
    ]
    for url in urls:
        store = open_store(url)
        seen += [repr(store), str(store.url), repr(store.settings), str(store.settings)]
        for call in (
            lambda store=store: store.search_bm25("q", 3),
            lambda store=store: store.count(),
            lambda store=store: store.delete_documents(["x"]),
        ):
            try:
                call()
            except StoreError as exc:
                seen += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            else:
                pytest.fail(f"{url} should be unreachable")
        logging.getLogger("sparsehybrid").error("store %r failed", store)
        store.close()
    for url in (
        f"qdrant://127.0.0.1:{port}/c?retries=2&timeout=1",
        f"qdrants://127.0.0.1:{port}/c?retries=1&timeout=1",
    ):
        with pytest.raises(StoreError) as info:
            open_store(url)
        seen += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    out, err = capsys.readouterr()
    everything = "\n".join(seen) + out + err + caplog.text
    assert "unavailable after 2 attempt(s)" in everything  # the errors really were raised and captured
    for secret in [*SECRETS, "url-PLANTED-pw"]:
        assert secret not in everything, f"secret {secret[:6]}... leaked"


def test_flow_run_parameters_logs_and_errors_hold_no_secret(prefect_api, monkeypatch, tmp_path):
    """A pipeline config names a secret as ${VAR}: Prefect stores the config as the run's
    parameters, so the value must only be expanded when the store is opened."""
    from prefect.client.orchestration import get_client

    from sparsehybrid.pipelines.config import PipelineConfig
    from sparsehybrid.pipelines.flows import run_pipeline

    secret = "flow-PLANTED-9a8b7c"
    monkeypatch.setenv("RELIABILITY_OS_PASSWORD", secret)
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "wing"}\n', encoding="utf-8")
    port = free_port()
    cfg = PipelineConfig.parse(
        {
            "source": {"path": str(src)},
            "store": f"opensearch://admin:${{RELIABILITY_OS_PASSWORD}}@127.0.0.1:{port}/idx?retries=1&timeout=1",
            "models": {"sparse": None, "dense": None},
        }
    )
    with pytest.raises(StoreError) as info:
        run_pipeline(cfg)
    texts = [str(info.value), "".join(traceback.format_exception(info.value))]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=5, sort="START_TIME_DESC")
        run = next(r for r in runs if "RELIABILITY_OS_PASSWORD" in str(r.parameters))
        texts.append(str(run.parameters))
        texts += [log.message for log in client.read_logs()]
    assert secret not in "\n".join(texts)


def _self_signed_cert(tmp_path):
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def untrusted_tls_server(tmp_path):
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate (no CA trusts it)."""
    cert, key = _self_signed_cert(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *a: None  # failed handshakes are the point
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["qdrants", "opensearchs", "elasticsearchs"])
def test_tls_certificates_are_verified_by_default(untrusted_tls_server, scheme):
    url = f"{scheme}://127.0.0.1:{untrusted_tls_server}/idx?retries=1&timeout=2"
    with pytest.raises(StoreError) as info:
        store = open_store(url)
        store.count()
    msg = str(info.value).lower()
    assert "certificate" in msg or "tlserror" in msg  # elastic_transport says only "TlsError: TLS error"


def test_tls_client_settings_verify_unless_told_not_to():
    os_store = open_store("opensearchs://127.0.0.1:9/idx")
    conn = os_store._client.transport.get_connection()
    assert conn.use_ssl and conn.pool.cert_reqs == "CERT_REQUIRED"
    es_store = open_store("elasticsearchs://127.0.0.1:9/idx")
    node = next(iter(es_store._client.transport.node_pool.all()))
    assert node.config.scheme == "https" and node.config.verify_certs is True
    off = open_store("elasticsearchs://127.0.0.1:9/idx?verify=false")
    assert next(iter(off._client.transport.node_pool.all())).config.verify_certs is False
    assert "verify=false" in off.url  # turning it off is visible wherever the store is named
    for s in (os_store, es_store, off):
        s.close()


def test_payload_filters_are_validated_before_any_request():
    for bad, match in [
        ({"lang": {"$ne": "en"}}, "unknown operators"),
        ({"lang) OR (1": "en"}, "not a valid metadata field name"),
        ({"lang": {"script": "doc['x'] > 0"}}, "unknown operators"),
        ({"lang": {"gt": "2000"}}, "must be a finite number"),
        ({"lang": {"en": 1}}, "unknown operators"),
        ({"lang": 1.5}, "must be a string, integer or boolean"),
        ({"lang": []}, "non-empty list"),
        ("lang = 'en'", "must be a dict"),
    ]:
        with pytest.raises(FilterError, match=match):
            parse_filter(bad)
    store = open_store("elasticsearch://127.0.0.1:9/idx")
    body = store.bm25_search_body("q", 5, parse_filter({"lang": "en' OR '1'='1"}))
    assert body["query"]["bool"]["filter"] == [{"term": {"metadata.lang": "en' OR '1'='1"}}]
    store.close()


def test_a_password_written_in_the_store_url_never_reaches_prefect(prefect_api, tmp_path):
    """Typed on the command line (user:password@host): the run's stored parameters, its logs and
    its artifact hold no trace of it, and the store is still reached with it."""
    from prefect.client.orchestration import get_client

    from sparsehybrid.pipelines.config import PipelineConfig
    from sparsehybrid.pipelines.flows import run_pipeline

    secret = "url-PLANTED-in-cli-4f3e"
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "a", "text": "wing"}\n', encoding="utf-8")
    port = free_port()
    url = f"opensearch://admin:{secret}@127.0.0.1:{port}/idx-{port}?retries=1&timeout=1"
    cfg = PipelineConfig.parse({"source": {"path": str(src)}, "store": url, "models": {"sparse": None, "dense": None}})
    with pytest.raises(StoreError) as info:
        run_pipeline(cfg)
    assert f"127.0.0.1:{port}" in str(info.value)  # it really tried that store
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=10, sort="START_TIME_DESC")
        texts = [str(r.parameters) for r in runs] + [log.message for log in client.read_logs()]
        texts += [str(a.data) for a in client.read_artifacts()]
    assert any(f"idx-{port}" in t or "SPARSEHYBRID_STORE_URL" in t for t in texts)
    assert secret not in "\n".join(texts)
    assert not [k for k in os.environ if k.startswith("SPARSEHYBRID_STORE_URL_")]  # not left behind
