"""TLS to a provider, over a real socket to a local HTTPS server with its own certificate.

An ``https`` endpoint's certificate is checked against the process's one TLS context (certifi's
CAs, or ``SSL_CERT_FILE``); a provider configured with a plain ``http`` URL has a connection
pool that trusts no certificate at all, so it can never make an unverified TLS connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.providers.base import CompletionRequest
from tasks.providers.http_base import JSONPoster, pooled_client, tls_context
from tasks.providers.registry import ProviderRegistry
from tasks.retry import RetryPolicy

REQ = CompletionRequest(messages=[{"role": "user", "content": "Say hi"}], max_tokens=16)
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "hi"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (no CA anywhere trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plumbline test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    requests: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).requests.append(self.path)
        body = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, certificate file, paths requested) of an HTTPS server on 127.0.0.1."""
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    handler = type("Handler", (_Handler,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v1", cert_file, handler.requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fresh_tls_context() -> Iterator[None]:
    """``tls_context()`` built anew for the test (it reads ``SSL_CERT_FILE`` once per process)
    and again after it, so no other test sees the test's trust."""
    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


def call(base_url: str, prefix: str = "vllm") -> Any:
    """One completion from ``prefix``'s provider (``vllm``: plain HTTP; ``openai``: its SDK)."""
    registry = ProviderRegistry(options={prefix: {
        "base_url": base_url, "api_key": "k",
        "retry": RetryPolicy(max_attempts=3, base_delay=0.01)}})

    async def go() -> Any:
        try:
            provider, model = registry.for_model(f"{prefix}/m")
            return await provider.complete(model, REQ)
        finally:
            await registry.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("prefix", ["vllm", "openai"])
def test_an_untrusted_certificate_is_refused_and_not_retried(
        prefix: str, https_server: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch,
        fresh_tls_context: None) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    base_url, _, requests = https_server
    out = call(base_url, prefix)
    assert not out.ok
    assert out.error.startswith("TLS certificate not trusted: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert out.attempts == 1  # the same answer on every attempt: not retried
    assert requests == []  # the request never left the handshake


@pytest.mark.parametrize("prefix", ["vllm", "openai"])
def test_a_certificate_trusted_through_ssl_cert_file_is_accepted(
        prefix: str, https_server: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch,
        fresh_tls_context: None) -> None:
    base_url, cert_file, requests = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    out = call(base_url, prefix)
    assert out.ok and out.text == "hi"
    assert requests == ["/v1/chat/completions"]


def test_one_tls_context_serves_every_client_and_poster(fresh_tls_context: None) -> None:
    shared = tls_context()
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    assert shared.cert_store_stats()["x509_ca"] > 0  # the CA bundle, loaded once

    async def built() -> list[Any]:
        posters = [JSONPoster("https://a.example/v1", {}, connections=4, timeout=5, tls=True)
                   for _ in range(2)]
        client = pooled_client()
        try:
            return [p._session.connector._ssl for p in posters] + \
                [client._transport.ssl_context]
        finally:
            await client.aclose()
            for p in posters:
                await p.aclose()

    assert all(ctx is shared for ctx in asyncio.run(built()))


def test_a_plain_http_poster_refuses_any_tls_connection(
        https_server: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch,
        fresh_tls_context: None) -> None:
    """A poster made for an ``http`` URL, pointed at HTTPS anyway: the handshake fails even
    though ``tls_context()`` would trust the server (through SSL_CERT_FILE)."""
    base_url, cert_file, requests = https_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))

    async def go() -> Any:
        poster = JSONPoster(f"{base_url}/chat/completions", {}, connections=1, timeout=5,
                            tls=False)
        try:
            context = poster._session.connector._ssl
            assert context.cert_store_stats()["x509_ca"] == 0
            assert context.verify_mode == ssl.CERT_REQUIRED
            return await poster.post(b"{}")
        finally:
            await poster.aclose()

    with pytest.raises(aiohttp.ClientConnectorCertificateError,
                       match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(go())
    assert requests == []
