"""Read endpoints: materialized summaries with ETag/304 and Cache-Control, clear 404s, health."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tasks.errors import StorageError
from tasks.storage.base import ObjectInfo
from tasks.storage.layout import LEGACY_HISTORY_PREFIX, evidence_key, history_key
from tasks.storage.local import LocalStore
from tasks.summaries.publish import put_json
from tests.support.helpers import DelegatingStore

CHART = {"data": [{"date": "2026-11-20", "fake/stable": 12}], "models": ["fake/stable"],
         "total_submissions": 12}


def test_chart_empty_before_the_first_nightly(client: TestClient) -> None:
    r = client.get("/api/data/chart")
    assert r.status_code == 200
    assert r.json() == {"data": [], "models": [], "total_submissions": 0}
    assert r.headers["etag"]


@pytest.mark.parametrize(("path", "name", "payload"), [
    ("/api/data/chart", "chart.json", CHART),
    ("/api/models", "models.json", {"models": [{"model_id": "openai/gpt-4o", "pass_rate": 0.9}]}),
    ("/api/drift", "drift.json", {"verdicts": {"openai/gpt-4o": "stable"}}),
])
def test_summary_served_with_etag_and_cache_control(
    client: TestClient, store: LocalStore, path: str, name: str, payload: Any
) -> None:
    put_json(store, name, payload)
    r = client.get(path)
    assert r.status_code == 200
    assert r.json() == payload
    assert r.headers["cache-control"].startswith("public, max-age=")
    etag = r.headers["etag"]
    assert etag.startswith('"')
    not_modified = client.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert client.get(path, headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200
    # A new publish is served at once, under a new ETag.
    put_json(store, name, {"new": True, "pad": "x" * 10})
    fresh = client.get(path, headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["new"] is True
    assert fresh.headers["etag"] != etag


@pytest.mark.parametrize(("path", "what"), [("/api/models", "models.json"),
                                            ("/api/drift", "drift.json")])
def test_missing_summary_is_a_clear_404(client: TestClient, path: str, what: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert what in r.json()["detail"]


def test_history_of_a_model_with_a_slash(client: TestClient, store: LocalStore) -> None:
    history = {"model_id": "openai/gpt-4o", "days": [{"date": "2026-11-20", "pass_rate": 0.9}]}
    store.put(history_key("openai/gpt-4o"), json.dumps(history).encode())
    r = client.get("/api/models/openai/gpt-4o/history")
    assert r.status_code == 200 and r.json() == history
    assert client.get("/api/models/openrouter/meta-llama/llama-3/history").status_code == 404
    assert "no history" in client.get("/api/models/fake/other/history").json()["detail"]
    for bad in ("..%2F..%2Fetc/history", "a%20b/history", "x%5Cy/history"):
        r = client.get(f"/api/models/{bad}")
        assert r.status_code == 422, bad
        assert "invalid model_id" in r.json()["detail"]


def test_history_is_found_by_the_exact_model_id(client: TestClient, store: LocalStore) -> None:
    """Issue 16, item 1: `fake__stable` was served `fake/stable`'s file (one slug for both).
    Keys are injective now, and a file left under an old slug is never read."""
    history = {"model_id": "fake/stable", "days": [], "community_days": []}
    store.put(history_key("fake/stable"), json.dumps(history).encode())
    store.put(f"{LEGACY_HISTORY_PREFIX}fake__stable.json", json.dumps(history).encode())
    assert client.get("/api/models/fake/stable/history").json() == history
    # (".tmp-x" would name a temp file under a slug that kept it: the store refuses such keys.)
    for lookalike in ("fake__stable", "Fake/Stable", "fake_stable", "fake/stable/x", ".tmp-x"):
        r = client.get(f"/api/models/{lookalike}/history")
        assert r.status_code == 404, lookalike
        assert "no history" in r.json()["detail"]
    # An id no submission could carry is refused, not looked up.
    for bad in ("fake%20stable", "fake%25stable", "fake%5Cstable"):
        r = client.get(f"/api/models/{bad}/history")
        assert r.status_code == 422 and "invalid model_id" in r.json()["detail"], bad


EVIDENCE = {"model_id": "openai/gpt-4o", "generated_at": "2026-11-30T03:00:00+00:00",
            "window": {"as_of": "2026-11-30"}, "prompts": [{"prompt_id": "cheap-001"}]}


def test_evidence_of_a_flagged_model_with_etag(client: TestClient, store: LocalStore) -> None:
    store.put(evidence_key("openai/gpt-4o"), json.dumps(EVIDENCE).encode())
    r = client.get("/api/models/openai/gpt-4o/evidence")
    assert r.status_code == 200 and r.json() == EVIDENCE
    assert r.headers["cache-control"].startswith("public, max-age=")
    etag = r.headers["etag"]
    assert client.get("/api/models/openai/gpt-4o/evidence",
                      headers={"If-None-Match": etag}).status_code == 304
    # The next night's file is served at once, under a new ETag.
    store.put(evidence_key("openai/gpt-4o"), json.dumps({**EVIDENCE, "prompts": []}).encode())
    fresh = client.get("/api/models/openai/gpt-4o/evidence", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["prompts"] == []
    # A history is not evidence, and evidence is not a history.
    assert client.get("/api/models/openai/gpt-4o/history").status_code == 404


def test_no_evidence_is_a_clear_404_and_a_bad_id_a_422(
    client: TestClient, store: LocalStore
) -> None:
    store.put(evidence_key("fake/drifting"), json.dumps(EVIDENCE).encode())
    for model_id in ("fake/stable", "fake__drifting", "Fake/Drifting", "fake/drifting/x"):
        r = client.get(f"/api/models/{model_id}/evidence")
        assert r.status_code == 404, model_id
        assert r.json()["detail"] == (
            f"no before/after evidence for model {model_id!r}: it is published only for "
            "models whose last nightly verdict is watch or drifting")
    for bad in ("fake%20drifting", "fake%5Cdrifting", "x" * 300):
        r = client.get(f"/api/models/{bad}/evidence")
        assert r.status_code == 422, bad


class RemoteStore(DelegatingStore):
    """A store with no local paths (like B2): reads go through the TTL cache. Counts gets."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.gets = 0
        self.down = False

    def get(self, key: str) -> bytes:
        if self.down:
            raise StorageError("simulated outage", key=key)
        self.gets += 1
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if self.down:
            raise StorageError("simulated outage")
        return self.inner.list(prefix)

    def describe(self) -> str:
        return "remote"

    def local_path(self, key: str) -> Path | None:
        return None


def test_remote_store_reads_are_cached(app_factory, store: LocalStore) -> None:  # type: ignore[no-untyped-def]
    remote = RemoteStore(store)
    put_json(store, "models.json", {"models": []})
    app = app_factory(remote, summary_cache_seconds=0.2)
    with TestClient(app) as c:
        for _ in range(20):
            assert c.get("/api/models").status_code == 200
        assert remote.gets == 1
        time.sleep(0.25)  # expired: fetched again, a new publish shows
        put_json(store, "models.json", {"models": ["new"]})
        assert c.get("/api/models").json() == {"models": ["new"]}
        assert remote.gets == 2
        # Storage down after expiry: the last good copy is served rather than a 503.
        remote.down = True
        time.sleep(0.25)
        assert c.get("/api/models").json() == {"models": ["new"]}
        # ...but a summary never fetched is an honest 503.
        assert c.get("/api/drift").status_code == 503


def test_health(client: TestClient, store: LocalStore) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["storage"] == "ok"
    assert body["last_nightly"] is None and body["version"]
    put_json(store, "nightly.json", {"finished_at": "2026-11-22T03:00:00+00:00"})
    client.post("/api/submit", json={"model_id": "a/b", "prompt_id": "p", "output": "o"})
    body = client.get("/api/health").json()
    assert body["last_nightly"] == "2026-11-22T03:00:00+00:00"
    assert body["pending_submissions"] == 1


def test_health_and_reads_when_storage_is_down(app_factory, store: LocalStore) -> None:  # type: ignore[no-untyped-def]
    remote = RemoteStore(store)
    remote.down = True
    with TestClient(app_factory(remote)) as c:
        r = c.get("/api/health")
        assert r.status_code == 503
        assert r.json()["status"] == "degraded" and "simulated outage" in r.json()["storage"]
        r = c.get("/api/drift")
        assert r.status_code == 503 and "storage unavailable" in r.json()["detail"]
        # Submissions are still acknowledged: they wait in the spool.
        r = c.post("/api/submit", json={"model_id": "a/b", "prompt_id": "p", "output": "o"})
        assert r.json()["status"] == "accepted"


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/submit", "/api/submit/batch", "/api/data/chart", "/api/models",
                 "/api/models/{model_id}/history", "/api/drift", "/api/health",
                 "/api/user/me/stats", "/api/user/me"):
        assert path in paths, path
