"""/api/user/me: stats, delete and anonymize touch only the caller's data, flushed or not."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.spool import DB_NAME
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.gdpr import user_keys
from tasks.records.io import read_records, table_to_parquet
from tasks.records.schema import to_table
from tasks.settings import Settings
from tasks.storage.layout import user_day_prefix
from tasks.storage.local import TMP_PREFIX, LocalStore
from tests.api.conftest import USER_A, USER_B, auth, flush, make_token, pramana_payload
from tests.support.helpers import record

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


# -- nothing left behind (issue 16, item 6) ----------------------------------------------------


def _holding(folder: Path, user_id: str) -> list[str]:
    """Every file or folder below ``folder`` whose name or bytes contain ``user_id``."""
    return [
        str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
        if user_id in str(p.relative_to(folder))
        or (p.is_file() and user_id.encode() in p.read_bytes())
    ]


def _killed_flush(store: LocalStore, user_id: str, day: date, n: int = 6) -> Path:
    """A flush SIGKILLed mid-write: a temp file, named as ``LocalStore.put`` names it, holding
    ``n`` of the user's rows in a partition that holds nothing else."""
    rows = [record(timestamp=datetime(day.year, day.month, day.day, 9, i, tzinfo=UTC),
                   user_id=user_id, source=SOURCE_COMMUNITY, prompt_id=f"killed-{i}")
            for i in range(n)]
    folder = store.root / user_day_prefix(day, user_id)
    folder.mkdir(parents=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    with os.fdopen(fd, "wb") as fh:
        fh.write(table_to_parquet(to_table(rows)))
    return Path(name)


def _many_pending(client: TestClient, headers: dict[str, str], n: int) -> None:
    results = [pramana_payload(prompt_id=f"q{i}", output=f"pending answer {i}",
                               timestamp="2026-11-21T10:00:00+00:00") for i in range(n)]
    r = client.post("/api/submit/batch", headers=headers, json={"results": results})
    assert r.json()["accepted"] == n


@pytest.mark.parametrize("anonymize", [False, True])
def test_delete_or_anonymize_leaves_no_byte_of_the_user_in_data_or_spool(
    client: TestClient, store: LocalStore, settings: Settings, anonymize: bool
) -> None:
    _submit(client, A, 3)
    _submit(client, B, 2)
    flush(client.app)
    _many_pending(client, A, 40)  # unflushed outputs: in the spool's db and its WAL
    _many_pending(client, B, 5)
    leftover = _killed_flush(store, USER_A, date(2026, 11, 22))
    assert store.list("raw/year=2026/month=11/day=22/") == []  # listings never showed it
    spool_dir = settings.spool_dir
    assert spool_dir is not None
    assert _holding(store.root, USER_A) and _holding(spool_dir, USER_A)

    params = {"anonymize_only": "true"} if anonymize else {}
    r = client.delete("/api/user/me", params=params, headers=A)
    assert r.status_code == 200
    if anonymize:
        assert r.json()["status"] == "anonymized" and r.json()["rows"] == 3 + 40
    else:
        assert r.json() == {"status": "deleted", "files": 2, "rows": 0, "pending_dropped": 40}

    assert not leftover.exists()
    assert _holding(store.root, USER_A) == []
    assert _holding(spool_dir, USER_A) == []  # the db, its -wal and -shm
    # The other user's data, flushed and pending, is all there.
    flush(client.app)
    assert read_records(store, user_keys(store, USER_B)).num_rows == 2 + 5
    anon = read_records(store, user_keys(store, "anonymous")).num_rows
    assert anon == (3 + 40 if anonymize else 0)


def test_stale_leftovers_are_swept_when_the_api_starts(
    app: FastAPI, store: LocalStore
) -> None:
    stale = _killed_flush(store, USER_A, date(2026, 11, 20))
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    young = _killed_flush(store, USER_B, date(2026, 11, 20))  # a write that may be under way
    with TestClient(app):
        deadline = time.monotonic() + 10
        while stale.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not stale.exists()
    assert not stale.parent.exists()  # the emptied partition is pruned with it
    assert young.exists()


def test_a_delete_the_log_could_not_forget_is_a_503_and_a_retry_finishes_it(
    client: TestClient, store: LocalStore, settings: Settings
) -> None:
    _many_pending(client, A, 10)
    assert settings.spool_dir is not None
    # An operator's sqlite3 shell in the middle of a read: the log cannot be truncated meanwhile.
    reader = sqlite3.connect(settings.spool_dir / DB_NAME)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM pending").fetchone()
    r = client.delete("/api/user/me", headers=A)
    assert r.status_code == 503
    assert "not finished, please retry" in r.json()["detail"]
    assert "another connection is reading" in r.json()["detail"]
    reader.close()
    r = client.delete("/api/user/me", headers=A)
    assert r.status_code == 200 and r.json()["status"] == "deleted"
    assert _holding(settings.spool_dir, USER_A) == []
    assert _holding(store.root, USER_A) == []
