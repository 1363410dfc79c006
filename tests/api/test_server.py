"""The production server configuration (api/server.py) under a real uvicorn in a subprocess:
proxy headers believed only from TRUSTED_PROXIES (issue 16 item 3), and request heads and tokens
bounded (item 9)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.server import BoundedHttpToolsProtocol, build_server, parser_limit
from tasks.settings import Settings
from tests.api.conftest import auth, make_token, pramana_payload
from tests.api.uvicorn_server import Server

MIB = 1024 * 1024


@contextmanager
def _server(tmp_path: Path, **env: str) -> Iterator[Server]:
    base = {"PLUMBLINE_DATA_DIR": str(tmp_path / "data"),
            "PLUMBLINE_SPOOL_DIR": str(tmp_path / "spool"), "PLUMBLINE_STORAGE": "local",
            "NEXTAUTH_SECRET": "test-nextauth-secret-0123456789abcdef",
            # uvicorn reads these when not told otherwise: the config must not listen to them.
            "FORWARDED_ALLOW_IPS": "*", "WEB_CONCURRENCY": "4"}
    server = Server({**base, **env}, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _submit_with_forwarded_for(server: Server, n: int, forwarded: str | None = None) -> list[int]:
    codes = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(n):
            r = client.post("/api/submit", json=pramana_payload(prompt_id=f"p{i}"),
                            headers={"X-Forwarded-For": forwarded or f"203.0.113.{i}"})
            codes.append(r.status_code)
    return codes


def test_config_trusts_proxy_headers_only_from_trusted_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    app = FastAPI()
    config = build_server(Settings(data_dir=tmp_path), app=app).config
    assert config.proxy_headers is False
    assert config.forwarded_allow_ips == []
    assert (config.http, config.ws, config.workers) == (BoundedHttpToolsProtocol, "none", 1)
    assert config.h11_max_incomplete_event_size == parser_limit(Settings()) == 40 * 1024
    config = build_server(Settings(data_dir=tmp_path, trusted_proxies="10.0.0.1,172.16.0.0/12"),
                          app=app).config
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == ["10.0.0.1", "172.16.0.0/12"]


def test_forwarded_for_from_an_untrusted_peer_does_not_bypass_the_rate_limit(
    tmp_path: Path,
) -> None:
    """Issue 16 item 3: 120 submissions from 127.0.0.1, each claiming another X-Forwarded-For,
    were all accepted under uvicorn's defaults. TRUSTED_PROXIES is unset: the header is ignored,
    the 61st gets 429."""
    with _server(tmp_path) as server:
        codes = _submit_with_forwarded_for(server, 120)
        assert codes[:60] == [200] * 60
        assert codes[60:] == [429] * 60
        r = httpx.get(server.url + "/api/data/chart", headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_forwarded_for_from_a_trusted_proxy_is_honoured(tmp_path: Path) -> None:
    with _server(tmp_path, TRUSTED_PROXIES="127.0.0.1") as server:
        # Each forwarded client has its own bucket...
        assert _submit_with_forwarded_for(server, 120) == [200] * 120
        # ...and one client behind the proxy is limited like any other.
        codes = _submit_with_forwarded_for(server, 61, forwarded="198.51.100.7")
        assert codes == [200] * 60 + [429]
        # A client writing its own entry further left cannot leave its bucket: the proxy appends
        # the address it saw, and only the right-most untrusted entry counts.
        spoofed = httpx.post(server.url + "/api/submit", json=pramana_payload(prompt_id="s"),
                             headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.7"})
        assert spoofed.status_code == 429


def _send_huge_header(port: int, size: int, out: list[tuple[float, bytes]]) -> None:
    """Stream a request whose one header is ``size`` bytes; record how long until the server
    answered or dropped the connection, and what it said."""
    start = time.monotonic()
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            chunk = b"a" * MIB
            for _ in range(size // MIB):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
            reply = sock.recv(4096)
        except OSError:
            pass  # reset by the server while we were still sending: refused
    out.append((time.monotonic() - start, reply))


def test_huge_headers_are_cut_off_without_growing_memory(tmp_path: Path) -> None:
    """Issue 16 item 9: four concurrent 50 MB headers were buffered (server memory 247 -> 512 MB).
    The parser now drops such a request after its first few tens of KiB."""
    with _server(tmp_path, RATE_LIMIT_PER_MINUTE="0") as server:
        httpx.get(server.url + "/api/health")  # warm up whatever a first request allocates
        before = peak = server.rss_kib()
        results: list[tuple[float, bytes]] = []
        threads = [threading.Thread(target=_send_huge_header, args=(server.port, 50 * MIB, results))
                   for _ in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, server.rss_kib())
            time.sleep(0.01)
        assert len(results) == 4
        for elapsed, reply in results:
            assert elapsed < 5, results
            # Dropped mid-upload, or answered with an error and closed; never served.
            assert reply == b"" or reply.split(b" ")[1] in (b"400", b"431"), reply[:100]
        grown_kib = max(peak, server.rss_kib()) - before
        print(f"server RSS {before} KiB before, peak {peak} KiB: +{grown_kib} KiB")
        assert grown_kib < 4 * 1024
        assert httpx.get(server.url + "/api/health").status_code == 200


def test_oversized_headers_and_tokens_are_refused(tmp_path: Path) -> None:
    """Item 9: a 1 MB token was accepted. A 1 MB header never reaches the app; a token over
    MAX_TOKEN_BYTES (4 KiB) that fits in the headers is a 401 although it is validly signed."""
    with _server(tmp_path, RATE_LIMIT_PER_MINUTE="0") as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        try:
            r = client.get("/api/user/me/stats", headers=auth("a" * MIB))
        except httpx.TransportError:
            pass  # reset while still sending: refused
        else:
            assert r.status_code in (400, 431), r.text
        token = make_token(padding="x" * 6000)
        assert 4096 < len(token) < 16 * 1024
        for method, path in (("GET", "/api/user/me/stats"), ("POST", "/api/submit")):
            r = client.request(method, path, headers=auth(token),
                               json=pramana_payload() if method == "POST" else None)
            assert r.status_code == 401, r.text
            assert "over the limit of 4096" in r.json()["detail"]
        # Headers over MAX_HEADER_BYTES (16 KiB) but under the parser's cap: a 431 naming them.
        r = client.get("/api/data/chart", headers={"X-Padding": "p" * 20_000})
        assert r.status_code == 431
        assert "over the limit of 16384" in r.json()["detail"]
        assert "x-padding" in r.json()["detail"]
        # An ordinary request still passes.
        assert client.get("/api/health").status_code == 200


def _read_until(sock: socket.socket, count: bytes, n: int, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while data.count(count) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_the_head_cap_leaves_ordinary_traffic_alone(tmp_path: Path) -> None:
    """The head guard counts only bytes of an unfinished head: large bodies, pipelined requests
    and a head that arrives in small pieces under the cap pass; one that trickles past it is a
    431 however slowly it comes."""
    with _server(tmp_path, RATE_LIMIT_PER_MINUTE="0") as server:
        # A body far larger than the head cap (1.6 MB of outputs in one batch).
        results = [pramana_payload(prompt_id=f"big-{i}", output="o" * 80_000) for i in range(20)]
        r = httpx.post(server.url + "/api/submit/batch", json={"results": results}, timeout=30)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["accepted"] == 20
        # 50 pipelined requests in one write.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            assert _read_until(sock, b"HTTP/1.1 200", 50).count(b"HTTP/1.1 200") == 50
        # A 12 KiB head in 1 KiB pieces: under both limits, served.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            head = (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 12_000
                    + b"\r\nConnection: close\r\n\r\n")
            for i in range(0, len(head), 1024):
                sock.sendall(head[i:i + 1024])
                time.sleep(0.002)
            assert _read_until(sock, b"HTTP/1.1", 1).startswith(b"HTTP/1.1 200")
        # A head trickling past the cap (40 KiB) is cut off with a 431.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            reply = b""
            try:
                for _ in range(200):
                    sock.sendall(b"p" * 1024)
                    time.sleep(0.002)
            except OSError:
                pass
            with suppress(OSError):  # reset before the reply could be read: refused too
                reply = _read_until(sock, b"HTTP/1.1", 1)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]
        assert httpx.get(server.url + "/api/health").status_code == 200
