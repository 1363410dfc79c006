"""/api/user/me: stats, delete and anonymize touch only the caller's data, flushed or not."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tasks.records.gdpr import user_keys
from tasks.records.io import read_records
from tasks.storage.local import LocalStore
from tests.api.conftest import USER_A, USER_B, auth, flush, make_token, pramana_payload

A, B = auth(make_token(USER_A)), auth(make_token(USER_B))


def _submit(client: TestClient, headers: dict[str, str], n: int, model: str = "openai/gpt-4o",
            day: int = 20) -> None:
    for i in range(n):
        r = client.post("/api/submit", headers=headers, json=pramana_payload(
            model_id=model, prompt_id=f"p{i}", timestamp=f"2026-11-{day}T10:00:0{i}+00:00"))
        assert r.json()["status"] == "accepted"


def test_stats_count_flushed_and_pending(client: TestClient) -> None:
    _submit(client, A, 3, day=19)
    flush(client.app)
    _submit(client, A, 2, model="anthropic/claude-sonnet-4-5", day=21)  # still in the spool
    _submit(client, B, 4)
    body = client.get("/api/user/me/stats", headers=A).json()
    assert body["user_id"] == USER_A
    assert body["count"] == 5
    assert body["models_tested"] == ["anthropic/claude-sonnet-4-5", "openai/gpt-4o"]
    assert body["last_submission"].startswith("2026-11-21T10:00:01")
    empty = client.get("/api/user/me/stats", headers=auth(make_token("00000000000000aa"))).json()
    assert (empty["count"], empty["models_tested"], empty["last_submission"]) == (0, [], None)


def test_delete_removes_only_my_data_flushed_or_pending(
    client: TestClient, store: LocalStore
) -> None:
    _submit(client, A, 3)
    _submit(client, B, 2)
    flush(client.app)
    _submit(client, A, 1, day=21)  # pending at delete time: must never reach storage
    r = client.delete("/api/user/me", headers=A)
    assert r.status_code == 200
    assert r.json() == {"status": "deleted", "files": 1, "rows": 0, "pending_dropped": 1}
    flush(client.app)
    assert user_keys(store, USER_A) == []
    assert read_records(store, user_keys(store, USER_B)).num_rows == 2
    assert client.get("/api/user/me/stats", headers=A).json()["count"] == 0
    # After a delete the same result can be submitted again (and is stored again).
    _submit(client, A, 1)
    assert client.get("/api/user/me/stats", headers=A).json()["count"] == 1


def test_anonymize_moves_rows_and_rewrites_user_id(client: TestClient, store: LocalStore) -> None:
    _submit(client, A, 2)
    flush(client.app)
    _submit(client, A, 1, day=21)  # pending: flushed first, then anonymized with the rest
    _submit(client, B, 1)
    r = client.delete("/api/user/me", params={"anonymize_only": "true"}, headers=A)
    assert r.status_code == 200
    assert r.json()["status"] == "anonymized" and r.json()["rows"] == 3
    assert user_keys(store, USER_A) == []
    anon = read_records(store, user_keys(store, "anonymous"))
    assert anon.num_rows == 3
    assert set(anon.column("user_id").to_pylist()) == {"anonymous"}
    assert read_records(store, user_keys(store, USER_B)).num_rows == 1
    assert client.get("/api/user/me/stats", headers=A).json()["count"] == 0


def test_bad_anonymize_flag_is_a_422(client: TestClient) -> None:
    r = client.delete("/api/user/me", params={"anonymize_only": "perhaps"}, headers=A)
    assert r.status_code == 422
