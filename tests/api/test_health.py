"""``/api/health`` tells the truth (issue 16, item 7): ``degraded`` with a 503 when storage cannot
be written, the spool cannot write or the last flush failed, and never a server path. Also the
full spool of item 10, seen from a client: the 503 names the real cause, nothing acknowledged is
lost."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.health import public_text
from api.spool import Spool
from tasks.errors import StorageError
from tasks.records.io import parquet_to_table
from tasks.settings import Settings
from tasks.storage.base import ObjectStore
from tasks.storage.layout import STATE
from tasks.storage.local import LocalStore
from tests.api.conftest import pramana_payload
from tests.support.b2 import make_b2_store
from tests.support.helpers import DelegatingStore


class ReadOnlyUnder(DelegatingStore):
    """A real local store whose writes below ``prefix`` fail while ``frozen`` is set, as they do
    on an immutable folder (``chattr +i``); reads keep working."""

    def __init__(self, inner: ObjectStore, prefix: str) -> None:
        super().__init__(inner)
        self.prefix = prefix
        self.frozen = True
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        if self.frozen and key.startswith(self.prefix):
            raise StorageError("could not write: Operation not permitted", key=key)
        self.inner.put(key, data)


def _stored_ids(store: LocalStore) -> Counter[str]:
    ids: Counter[str] = Counter()
    for info in store.list("raw/"):
        ids.update(parquet_to_table(store.get(info.key)).column("id").to_pylist())
    return ids


def _submit(client: TestClient, i: int) -> Any:
    return client.post("/api/submit", json=pramana_payload(prompt_id=f"h{i}", output=f"o{i}"))


def _wait_for(client: TestClient, done: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + 15
    while True:
        r = client.get("/api/health")
        if done(r.json()) or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def _no_path(text: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text, text


def test_healthy_names_the_store_not_its_folder(client: TestClient, store: LocalStore,
                                               tmp_path: Path) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert (body["store"], body["storage"], body["spool"]) == ("local", "ok", "ok")
    _no_path(r.text, tmp_path)
    assert store.list(f"{STATE}/") == []  # the write probe cleans up after itself


def test_b2_store_is_named_by_its_bucket(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(make_b2_store()[0])) as c:
        r = c.get("/api/health")
    assert r.status_code == 200 and r.json()["store"] == "b2:plumbline-test"


def test_raw_immutable_is_degraded_until_a_flush_succeeds(
    app_factory: Callable[..., FastAPI], store: LocalStore, tmp_path: Path
) -> None:
    frozen = ReadOnlyUnder(store, "raw/")
    with TestClient(app_factory(frozen, spool_flush_seconds=0.05)) as c:
        assert _submit(c, 1).json()["status"] == "accepted"
        r = _wait_for(c, lambda b: b["flush_error"] is not None)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "degraded"
        assert body["storage"] == "ok"  # reads and the probe under state/ still work...
        assert "Operation not permitted" in body["flush_error"]  # ...but no row reaches raw/
        assert any(p.startswith("last flush failed") for p in body["problems"])
        assert body["pending_submissions"] == 1
        _no_path(r.text, tmp_path)
        frozen.frozen = False  # the operator fixes the folder: the next retry flushes
        r = _wait_for(c, lambda b: b["status"] == "ok")
        assert r.status_code == 200 and r.json()["pending_submissions"] == 0
    assert sum(_stored_ids(store).values()) == 1


@contextmanager
def _immutable(folder: Path) -> Iterator[None]:
    """``chattr +i`` on ``folder`` (root cannot be kept out by a chmod); skip where the
    filesystem or the container does not allow it."""
    folder.mkdir(parents=True, exist_ok=True)
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("no chattr here")
    if subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_raw_immutable_on_the_real_filesystem(
    app_factory: Callable[..., FastAPI], store: LocalStore, tmp_path: Path
) -> None:
    # The issue's own setup: raw/ made immutable under a running API.
    with TestClient(app_factory(spool_flush_seconds=0.05)) as c, _immutable(store.root / "raw"):
        assert _submit(c, 1).json()["status"] == "accepted"
        r = _wait_for(c, lambda b: b["flush_error"] is not None)
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        assert "Operation not permitted" in r.json()["flush_error"]
        _no_path(r.text, tmp_path)


def test_store_that_cannot_be_written_is_degraded(
    app_factory: Callable[..., FastAPI], store: LocalStore, tmp_path: Path
) -> None:
    with TestClient(app_factory(ReadOnlyUnder(store, ""))) as c:
        r = c.get("/api/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded" and body["spool"] == "ok"
    assert body["storage"].startswith("error: StorageError: could not write")
    assert body["storage"].endswith("(writing a probe object)")
    assert body["problems"] == [f"storage {body['storage']}"]
    _no_path(r.text, tmp_path)


def test_full_spool_every_submit_503_names_the_cause_and_health_says_so(
    app_factory: Callable[..., FastAPI], settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    app = app_factory()
    app.state.spool.close()
    assert settings.spool_dir is not None
    # SQLite's max_page_count: past it every write fails with SQLITE_FULL, as on a full disk.
    app.state.spool = Spool(settings.spool_dir, max_bytes=96 * 1024)
    acked: set[str] = set()
    with TestClient(app) as c:
        for i in range(10_000):
            r = _submit(c, i)
            if r.status_code != 200:
                break
            acked.add(r.json()["id"])
        assert r.status_code == 503
        assert "database or disk is full" in r.json()["detail"]
        assert "cannot rollback" not in r.json()["detail"]
        _no_path(r.text, tmp_path)
        assert _submit(c, 10_001).status_code == 503  # every submit now

        h = c.get("/api/health")
        assert h.status_code == 503
        body = h.json()
        assert body["status"] == "degraded" and body["storage"] == "ok"
        assert "database or disk is full" in body["spool"]
        assert body["problems"] == [f"spool {body['spool']}"]
        _no_path(h.text, tmp_path)
        # Nothing acknowledged is lost: the flush stores every acknowledged row exactly once.
        assert app.state.spool.flush(store) == len(acked)
        assert _stored_ids(store) == Counter(dict.fromkeys(acked, 1))
        # The flush freed room: submissions are accepted again, and health recovers.
        assert _submit(c, 20_000).json()["status"] == "accepted"
        app.state.health_probe.ttl = 0  # no need to wait out the probe interval here
        assert c.get("/api/health").json()["status"] == "ok"


def test_closed_spool_is_degraded(client: TestClient, tmp_path: Path) -> None:
    client.app.state.spool.close()  # type: ignore[attr-defined]
    assert _submit(client, 1).status_code == 503
    r = client.get("/api/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded" and "closed" in body["spool"]
    assert body["pending_submissions"] is None
    _no_path(r.text, tmp_path)


def test_probes_run_at_most_once_per_interval(
    app_factory: Callable[..., FastAPI], store: LocalStore
) -> None:
    counting = ReadOnlyUnder(store, "nowhere/")
    with TestClient(app_factory(counting)) as c:
        for _ in range(20):
            assert c.get("/api/health").status_code == 200
    assert len([k for k in counting.puts if k.startswith(f"{STATE}/health/")]) == 1


def test_no_path_survives_even_when_an_error_quotes_one(
    app_factory: Callable[..., FastAPI], store: LocalStore, tmp_path: Path
) -> None:
    class Quoting(DelegatingStore):
        def put(self, key: str, data: bytes) -> None:
            # As a library might word it: the full path of the file it could not write.
            raise StorageError(f"[Errno 30] Read-only file system: '{store.root}/{key}' and "
                               "'/srv/elsewhere/tmp/x.parquet'")

    with TestClient(app_factory(Quoting(store))) as c:
        r = c.get("/api/health")
    assert r.status_code == 503
    _no_path(r.text, tmp_path)
    assert "/srv/elsewhere" not in r.text
    assert "<folder>/state/health/probe-" in r.text and "<path>" in r.text


def test_public_text_keeps_keys_and_urls() -> None:
    text = ("B2 upload in bucket b failed: https://api.backblazeb2.com/b2api/v3/b2_upload "
            "(key: raw/year=2026/month=11/day=20/user=anonymous/x.parquet) at /var/lib/data/x")
    assert public_text(text, [Path("/var/lib/data")]) == text.replace("/var/lib/data", "<folder>")
    assert public_text("database or disk is full", [Path("data")]) == "database or disk is full"
