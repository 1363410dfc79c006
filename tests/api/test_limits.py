"""Limits: 60 requests/min per client IP (429 + Retry-After), counted across every API process
sharing the spool folder and pruned after the minute, X-Forwarded-For only from trusted proxies,
a body size limit (413), and CORS."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.limits import client_ip
from api.ratelimit import RATE_DB_NAME, SharedWindowLimiter, SlidingWindowLimiter
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


# --- the count shared by every API process on the host (issue 14) --------------------------------

def test_shared_window_holds_across_processes_sharing_the_folder(tmp_path: Path) -> None:
    # Two limiters on one folder, each with its own connection: two API worker processes.
    now = [1000.5]
    a = SharedWindowLimiter(tmp_path, 60, clock=lambda: now[0])
    b = SharedWindowLimiter(tmp_path, 60, clock=lambda: now[0])
    waits = [(a if i % 2 else b).hit("203.0.113.7") for i in range(120)]
    assert waits[:60] == [0.0] * 60  # 30 through each, not 60 each
    assert waits[60:] == [pytest.approx(59.5)] * 60  # the 1000 s bucket leaves at 1060
    assert b.hit("203.0.113.8") == 0.0  # another client has its own budget
    now[0] = 1059.9
    assert a.hit("203.0.113.7") == pytest.approx(0.1)
    now[0] = 1060.0  # the whole first minute has left the window
    assert [(a if i % 2 else b).hit("203.0.113.7") for i in range(61)] == (
        [0.0] * 60 + [pytest.approx(60.0)])
    a.close()
    b.close()


def test_shared_window_prunes_buckets_older_than_the_window(tmp_path: Path) -> None:
    now = [1000.0]
    limiter = SharedWindowLimiter(tmp_path, 60, clock=lambda: now[0])
    for i in range(30):
        limiter.hit(f"198.51.100.{i}")
    now[0] = 1030.0
    for i in range(10):
        limiter.hit(f"198.51.100.{i}")
    assert limiter.rows() == 40
    assert limiter.prune(now=1059.0) == 0  # everything is still inside the minute
    assert limiter.prune(now=1060.0) == 30
    assert limiter.rows() == 10
    # A process started later prunes on its first request, without being asked.
    later = SharedWindowLimiter(tmp_path, 60, clock=lambda: 1100.0)
    assert later.hit("192.0.2.1") == 0.0
    assert later.rows() == 1
    # Buckets "from the future" (the clock was stepped back) go too.
    assert limiter.prune(now=900.0) == 1
    limiter.close()
    later.close()


def test_a_damaged_count_database_is_recreated(tmp_path: Path) -> None:
    (tmp_path / RATE_DB_NAME).write_bytes(b"not a database " * 1000)
    limiter = SharedWindowLimiter(tmp_path, 2)
    assert [limiter.hit("ip") > 0 for _ in range(3)] == [False, False, True]
    limiter.close()


def test_two_apps_on_one_spool_folder_share_the_limit(app_factory) -> None:  # type: ignore[no-untyped-def]
    first, second = app_factory(rate_limit_per_minute=60), app_factory(rate_limit_per_minute=60)
    with TestClient(first, client=("203.0.113.9", 5000)) as a, \
            TestClient(second, client=("203.0.113.9", 5001)) as b:
        codes = [(a if i % 2 else b).get("/api/data/chart").status_code for i in range(62)]
        assert codes == [200] * 60 + [429, 429]


def test_a_busy_count_database_delays_a_request_and_never_fails_it(
    app_factory, settings: Settings  # type: ignore[no-untyped-def]
) -> None:
    app = app_factory(rate_limit_per_minute=5)
    assert settings.spool_dir is not None
    with TestClient(app, client=("203.0.113.10", 5000)) as c:
        assert c.get("/api/data/chart").status_code == 200
        # Another process is writing the counts (holding SQLite's write lock) for 0.3 s.
        other = sqlite3.connect(settings.spool_dir / RATE_DB_NAME, isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
        start = time.monotonic()
        assert c.get("/api/data/chart").status_code == 200
        assert time.monotonic() - start >= 0.25  # it waited, then counted in the shared table
        count = other.execute("SELECT sum(n) FROM hits WHERE client = '203.0.113.10'")
        assert count.fetchone()[0] == 2
        # Held longer than a request waits: this process counts on its own meanwhile.
        other.execute("BEGIN IMMEDIATE")
        assert c.get("/api/data/chart").status_code == 200
        other.execute("ROLLBACK")
        # That request was not in the shared count (2 of 5 so far).
        assert [c.get("/api/data/chart").status_code for _ in range(4)] == [200, 200, 200, 429]
        other.close()
