"""Limits: 60 requests/min per client IP (429 + Retry-After), X-Forwarded-For only from trusted
proxies, a body size limit (413), and CORS."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.limits import SlidingWindowLimiter, client_ip
from tasks.settings import Settings
from tests.api.conftest import pramana_payload


def test_61st_request_in_a_minute_is_429_with_retry_after(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(rate_limit_per_minute=60)
    with TestClient(app, client=("203.0.113.7", 5000)) as c:
        codes = [c.get("/api/data/chart").status_code for _ in range(30)]
        codes += [c.post("/api/submit", json=pramana_payload(prompt_id=f"p{i}")).status_code
                  for i in range(30)]
        assert codes == [200] * 60
        r = c.get("/api/data/chart")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "60 requests per minute" in r.json()["detail"]
        assert c.post("/api/submit", json=pramana_payload()).status_code == 429
        # Health is exempt (monitors), and so is /docs.
        assert c.get("/api/health").status_code == 200
    # Another client has its own budget.
    with TestClient(app, client=("203.0.113.8", 5000)) as other:
        assert other.get("/api/data/chart").status_code == 200


def test_window_slides() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(3, 60.0, clock=lambda: now[0])
    assert [limiter.hit("ip") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("ip") == 60.0
    now[0] += 20
    assert limiter.hit("ip") == 40.0
    now[0] += 40.5
    assert limiter.hit("ip") == 0.0  # the first hit has left the window
    assert limiter.hit("other") == 0.0


def _scope(peer: str, xff: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_x_forwarded_for_only_from_trusted_proxies() -> None:
    from api.limits import parse_networks

    trusted = parse_networks(["10.0.0.1", "172.16.0.0/12"])
    # Not behind a trusted proxy: the header is ignored (a client cannot pick its own bucket).
    assert client_ip(_scope("198.51.100.4", "1.2.3.4"), trusted) == "198.51.100.4"
    assert client_ip(_scope("198.51.100.4", "1.2.3.4"), []) == "198.51.100.4"
    # Behind one: the right-most address that is not a proxy; spoofed entries further left lose.
    assert client_ip(_scope("10.0.0.1", "6.6.6.6, 1.2.3.4"), trusted) == "1.2.3.4"
    assert client_ip(_scope("10.0.0.1", "1.2.3.4, 172.20.0.9"), trusted) == "1.2.3.4"
    assert client_ip(_scope("10.0.0.1", "garbage"), trusted) == "10.0.0.1"
    assert client_ip(_scope("10.0.0.1"), trusted) == "10.0.0.1"


def test_rate_limit_uses_forwarded_ip_behind_trusted_proxy(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(rate_limit_per_minute=2, trusted_proxies=["10.0.0.1"])
    with TestClient(app, client=("10.0.0.1", 5000)) as proxy:
        for client_addr in ("1.1.1.1", "2.2.2.2"):
            h = {"X-Forwarded-For": client_addr}
            assert [proxy.get("/api/data/chart", headers=h).status_code for _ in range(3)] == [
                200, 200, 429]
    with TestClient(app, client=("198.51.100.9", 5000)) as direct:
        # Rotating the header from an untrusted peer does not buy more requests.
        codes = [direct.get("/api/data/chart", headers={"X-Forwarded-For": f"9.9.9.{i}"})
                 .status_code for i in range(3)]
        assert codes == [200, 200, 429]


def test_body_limit_is_413(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(max_body_bytes=4096)
    with TestClient(app) as c:
        big = pramana_payload(output="x" * 5000)
        del big["result_hash"]
        r = c.post("/api/submit", json=big)
        assert r.status_code == 413
        assert "4096 bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: a streamed upload
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        r = c.post("/api/submit", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        small = pramana_payload()
        assert c.post("/api/submit", json=small).json()["status"] == "accepted"
        assert c.app.state.spool.pending_count() == 1


def test_cors(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(cors_origins=["https://dash.example"], rate_limit_per_minute=1)
    with TestClient(app) as c:
        r = c.options("/api/submit", headers={
            "Origin": "https://dash.example", "Access-Control-Request-Method": "POST"})
        assert r.headers["access-control-allow-origin"] == "https://dash.example"
        r = c.get("/api/data/chart", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        # A 429 still carries CORS headers, so the dashboard can read Retry-After.
        r = c.get("/api/data/chart", headers={"Origin": "https://dash.example"})
        assert r.status_code == 429
        assert r.headers["access-control-allow-origin"] == "https://dash.example"
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()


def test_bad_trusted_proxy_setting_fails_at_startup() -> None:
    with pytest.raises(ValidationError, match=r"TRUSTED_PROXIES entry 'proxy\.local'"):
        Settings(trusted_proxies="10.0.0.1,proxy.local")
