"""POST /api/submit and /api/submit/batch: the Pramana payload, the dedupe identity, the rows
that reach storage, and a clear 422 for every bad field."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tasks.errors import ConfigError
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.gdpr import user_keys
from tasks.records.io import read_records
from tasks.records.schema import output_hash
from tasks.storage.layout import check_run_id, check_user_id, user_day_prefix
from tasks.storage.local import LocalStore
from tests.api.conftest import USER_A, USER_B, auth, flush, make_token, pramana_payload


def _stored(store: LocalStore, user_id: str) -> list[dict[str, Any]]:
    return read_records(store, user_keys(store, user_id)).to_pylist()


def test_pramana_payload_is_accepted_and_stored(client: TestClient, store: LocalStore) -> None:
    body = pramana_payload()
    r = client.post("/api/submit", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "accepted"
    assert answer["hash"] == body["result_hash"]
    assert len(answer["id"]) == 36
    assert flush(client.app) == 1
    (row,) = _stored(store, "anonymous")
    assert row["id"] == answer["id"]
    assert row["user_id"] == "anonymous"
    assert row["source"] == SOURCE_COMMUNITY
    assert (row["model_id"], row["prompt_id"], row["output"]) == (
        "openai/gpt-4o", "cheap-001", "The answer is 6.")
    assert row["passed"] is True and row["score"] == 1.0 and row["latency_ms"] == 412
    assert row["seed"] == 42 and row["suite_version"] == "1.0.0"
    assert row["timestamp"].isoformat() == "2026-11-20T10:00:00.123456+00:00"
    assert (row["year"], row["month"], row["day"]) == (2026, 11, 20)
    meta = json.loads(row["metadata_json"])
    assert meta == {"runner_version": "0.3.1", "assertion_details": {"matched": "6"}}
    keys = user_keys(store, "anonymous")
    assert keys[0].startswith("raw/year=2026/month=11/day=20/user=anonymous/community_")


def test_user_comes_from_the_token_never_the_body(client: TestClient, store: LocalStore) -> None:
    body = pramana_payload(user_id=USER_B)  # unknown field: ignored
    r = client.post("/api/submit", json=body, headers=auth(make_token(USER_A)))
    assert r.json()["status"] == "accepted"
    flush(client.app)
    assert [r["user_id"] for r in _stored(store, USER_A)] == [USER_A]
    assert _stored(store, USER_B) == []


def test_resubmission_is_a_duplicate_stored_once(client: TestClient, store: LocalStore) -> None:
    first = client.post("/api/submit", json=pramana_payload()).json()
    again = client.post("/api/submit", json=pramana_payload()).json()
    assert again == {**first, "status": "duplicate"}
    flush(client.app)
    # ...even after the first one has left the spool for storage.
    later = client.post("/api/submit", json=pramana_payload()).json()
    assert later["status"] == "duplicate"
    flush(client.app)
    assert len(_stored(store, "anonymous")) == 1


def test_identical_outputs_of_different_runs_are_not_duplicates(
    client: TestClient, store: LocalStore
) -> None:
    outcomes = [
        client.post("/api/submit", json=pramana_payload()).json()["status"],
        # the same output, produced by a later run
        client.post("/api/submit", json=pramana_payload(
            timestamp="2026-11-21T10:00:00+00:00")).json()["status"],
        # the same result by another user
        client.post("/api/submit", json=pramana_payload(),
                    headers=auth(make_token(USER_A))).json()["status"],
        # another sample of the same run
        client.post("/api/submit", json=pramana_payload(sample_idx=1)).json()["status"],
    ]
    assert outcomes == ["accepted"] * 4
    flush(client.app)
    anon = _stored(store, "anonymous")
    assert len(anon) == 3
    assert len({r["output_hash"] for r in anon}) == 1  # same output: the signal, kept thrice
    assert len(_stored(store, USER_A)) == 1


def test_without_timestamp_every_submission_is_new(client: TestClient) -> None:
    body = pramana_payload()
    del body["timestamp"]
    statuses = [client.post("/api/submit", json=body).json()["status"] for _ in range(2)]
    assert statuses == ["accepted", "accepted"]


def test_result_hash_is_recomputed(client: TestClient) -> None:
    r = client.post("/api/submit", json=pramana_payload(result_hash="sha256:" + "0" * 64))
    assert r.status_code == 422
    assert "does not match" in r.json()["detail"]
    # A bare hex digest (no prefix) is the same hash.
    good = output_hash("openai/gpt-4o", "cheap-001", "The answer is 6.")
    r = client.post("/api/submit", json=pramana_payload(result_hash=good.removeprefix("sha256:")))
    assert r.json()["status"] == "accepted"
    # No result_hash at all: the server's hash is answered.
    body = pramana_payload(prompt_id="cheap-002")
    del body["result_hash"]
    assert client.post("/api/submit", json=body).json()["hash"] == output_hash(
        "openai/gpt-4o", "cheap-002", "The answer is 6.")


BAD_FIELDS: list[tuple[str, Any]] = [
    ("model_id", "../../etc/passwd"),
    ("model_id", "/abs/path"),
    ("model_id", "a//b"),
    ("model_id", "a\\b"),
    ("model_id", ""),
    ("model_id", "x" * 201),
    ("model_id", 123),
    ("prompt_id", ".."),
    ("prompt_id", "a/../b"),
    ("prompt_id", "p\x00"),
    ("prompt_id", "x" * 201),
    ("output", "x" * 100_001),
    ("output", "\ud800"),
    ("output", None),
    ("score", 1.5),
    ("score", -0.1),
    ("score", "high"),
    ("latency_ms", -1),
    ("temperature", 11),
    ("seed", 2**64),
    ("suite_hash", "has space"),
    ("suite_version", "x" * 101),
    ("runner_version", "v\n1"),
    ("result_hash", "md5:abc"),
    ("timestamp", "2019-12-31T23:59:59Z"),
    ("timestamp", "2999-01-01T00:00:00Z"),
    ("timestamp", "yesterday"),
    ("assertion_result", {"passed": "maybe"}),
    ("sample_idx", -1),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_bad_field_is_a_422_naming_it(client: TestClient, field: str, value: Any) -> None:
    body = pramana_payload()
    body[field] = value
    if field in ("model_id", "prompt_id", "output"):
        body.pop("result_hash")
    # json.dumps escapes a lone surrogate as "\ud800", as a client's JSON library may.
    r = client.post("/api/submit", content=json.dumps(body),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, (field, value, r.text)
    locs = [e["loc"] for e in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert client.app.state.spool.pending_count() == 0


def test_missing_required_fields_and_bad_json(client: TestClient) -> None:
    for field in ("model_id", "prompt_id", "output"):
        body = pramana_payload()
        del body[field]
        r = client.post("/api/submit", json=body)
        assert r.status_code == 422
        assert ["body", field] in [e["loc"] for e in r.json()["detail"]]
    r = client.post("/api/submit", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_batch(client: TestClient, store: LocalStore) -> None:
    results = [pramana_payload(prompt_id=f"case-{i}") for i in range(20)]
    r = client.post("/api/submit/batch", json={"results": results},
                    headers=auth(make_token(USER_B)))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["duplicates"]) == (20, 0)
    resend = [*results[:5], pramana_payload(prompt_id="case-new")]
    again = client.post("/api/submit/batch", json={"results": resend},
                        headers=auth(make_token(USER_B))).json()
    assert (again["accepted"], again["duplicates"]) == (1, 5)
    assert [x["status"] for x in again["results"]] == ["duplicate"] * 5 + ["accepted"]
    flush(client.app)
    assert len(_stored(store, USER_B)) == 21


def test_batch_is_all_or_nothing(client: TestClient) -> None:
    results = [pramana_payload(prompt_id=f"case-{i}") for i in range(3)]
    results[2]["result_hash"] = "sha256:" + "1" * 64
    r = client.post("/api/submit/batch", json={"results": results})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("results[2]:")
    results[2]["score"] = 7
    r = client.post("/api/submit/batch", json={"results": results})
    assert ["body", "results", 2, "score"] in [e["loc"] for e in r.json()["detail"]]
    for empty in ({"results": []}, {"results": [pramana_payload()] * 501}, []):
        assert client.post("/api/submit/batch", json=empty).status_code in (413, 422)
    assert client.app.state.spool.pending_count() == 0


# Issue 16 item 8: every one of these was accepted with a trailing newline ("$" matches before a
# final "\n"), and would have been stored as an id of its own.
ANCHORED_FIELDS: dict[str, str] = {
    "model_id": "openai/gpt-4o",
    "prompt_id": "cheap-001",
    "run_id": "run-2026-11-20",
    "suite": "cheap",
    "suite_hash": "sha256:" + "ab" * 32,
    "suite_version": "1.0.0",
    "runner_version": "0.3.1",
    "category": "reasoning",
    "assertion_type": "contains",
    "result_hash": "",  # filled in by pramana_payload below
}


@pytest.mark.parametrize("suffix", ["\n", "\r", "\x00", "\r\n"], ids=["LF", "CR", "NUL", "CRLF"])
@pytest.mark.parametrize("field", sorted(ANCHORED_FIELDS))
def test_trailing_control_character_is_a_422_naming_the_field(
    client: TestClient, store: LocalStore, field: str, suffix: str
) -> None:
    good = {k: v for k, v in ANCHORED_FIELDS.items() if k != "result_hash"}
    body = pramana_payload(**good)
    if field == "result_hash":
        body["result_hash"] += suffix
    else:
        # The hash is computed over the bad value, so only the field's own check can refuse it.
        body = pramana_payload(**{**good, field: good[field] + suffix})
    for path, payload, loc in (("/api/submit", body, ["body", field]),
                               ("/api/submit/batch", {"results": [body]},
                                ["body", "results", 0, field])):
        r = client.post(path, json=payload)
        assert r.status_code == 422, (path, r.text)
        assert loc in [e["loc"] for e in r.json()["detail"]], r.text
    assert client.app.state.spool.pending_count() == 0
    # The same body without the suffix is accepted: the suffix alone was refused.
    assert client.post("/api/submit", json=pramana_payload(**good)).status_code == 200
    flush(client.app)
    assert not any(ch in o.key for o in store.list("") for ch in "\n\r\x00")


@pytest.mark.parametrize("suffix", ["\n", "\r", "\x00"], ids=["LF", "CR", "NUL"])
def test_storage_layer_refuses_the_same_ids(suffix: str) -> None:
    """Behind the API, the storage keys check again (a run id also comes from the Prefect form and
    the CLI): a trailing control character never names a partition or a run folder."""
    assert check_user_id(USER_B) == USER_B
    with pytest.raises(ValueError, match="invalid user_id"):
        check_user_id(USER_B + suffix)
    with pytest.raises(ValueError, match="invalid user_id"):
        user_day_prefix(date(2026, 11, 20), "anonymous" + suffix)
    assert check_run_id("run-1") == "run-1"
    with pytest.raises(ConfigError, match="invalid run_id"):
        check_run_id("run-1" + suffix)
