"""Exports: every dataset in every format holds what the API's JSON says, and a user can take
their own raw rows away as Parquet."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tasks.summaries.export import flatten
from tests.api.conftest import SECRET, USER_A, auth, make_token, pramana_payload
from tests.support.demo import publish_demo_night

TODAY = date(2026, 11, 30)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store after a night over the demo history (built once for the module)."""
    root = tmp_path_factory.mktemp("export")
    publish_demo_night(LocalStore(root / "data"), TODAY)
    return root


@pytest.fixture(scope="module")
def client(published: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=published / "data", spool_dir=published / "spool",
                        nextauth_secret=SECRET, rate_limit_per_minute=10_000,
                        spool_flush_seconds=3600)
    with TestClient(create_app(settings, LocalStore(published / "data"))) as c:
        yield c


def _api_rows(client: TestClient, dataset: str, model: str | None) -> list[dict[str, Any]]:
    """What the read routes serve, flattened into the rows an export should hold."""
    if dataset == "models":
        items = client.get("/api/models").json()["models"]
    elif dataset == "drift":
        doc = client.get("/api/drift").json()
        items = doc["tests"] + doc["community_tests"]
    else:
        doc = client.get(f"/api/models/{model}/history").json()
        items = [{"model_id": doc["model_id"], **d}
                 for d in doc["days"] + doc["community_days"]]
    return [flatten(i) for i in items]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


CASES = [("models", None), ("drift", None), ("history", "fake/drifting")]


@pytest.mark.parametrize(("dataset", "model"), CASES)
def test_every_format_holds_what_the_api_serves(
    client: TestClient, dataset: str, model: str | None
) -> None:
    expected = _api_rows(client, dataset, model)
    assert expected, "the demo night publishes rows for every dataset"
    query = {"model": model} if model else {}

    as_json = client.get(f"/api/export/{dataset}", params={**query, "format": "json"})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json() == expected

    as_parquet = client.get(f"/api/export/{dataset}", params={**query, "format": "parquet"})
    assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert f'filename="{dataset}' in as_parquet.headers["content-disposition"]
    frame = pl.read_parquet(io.BytesIO(as_parquet.content))
    got = [{k: _plain(v) for k, v in row.items()} for row in frame.to_dicts()]
    # A row object omits nothing but the frame has every column: compare on each row's keys.
    assert [{k: r[k] for k in e} for r, e in zip(got, expected, strict=True)] == expected

    as_csv = client.get(f"/api/export/{dataset}", params={**query, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    read_back = pl.read_csv(io.BytesIO(as_csv.content), schema=frame.schema)
    assert read_back.equals(frame)


def test_history_rows_are_the_models_days(client: TestClient) -> None:
    rows = client.get("/api/export/history", params={"model": "fake/stable"}).json()
    assert {r["model_id"] for r in rows} == {"fake/stable"}
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    assert len(rows) == 35


def test_unchanged_export_is_not_modified(client: TestClient) -> None:
    first = client.get("/api/export/drift", params={"format": "csv"})
    etag = first.headers["etag"]
    assert client.get("/api/export/drift", params={"format": "csv"},
                      headers={"If-None-Match": etag}).status_code == 304
    # Another format of the same summary is another file.
    other = client.get("/api/export/drift", params={"format": "parquet"})
    assert other.headers["etag"] != etag


@pytest.mark.parametrize(("url", "status", "needle"), [
    ("/api/export/history", 422, "needs a model id"),
    ("/api/export/history?model=fake/nope", 404, "no history for model 'fake/nope'"),
    ("/api/export/models?model=fake/stable", 422, "history dataset only"),
    ("/api/export/history?model=bad%20id", 422, "invalid model"),
    ("/api/export/secrets", 422, "dataset"),
    ("/api/export/models?format=xlsx", 422, "format"),
])
def test_bad_requests_say_what_is_wrong(
    client: TestClient, url: str, status: int, needle: str
) -> None:
    r = client.get(url)
    assert r.status_code == status
    assert needle in json.dumps(r.json())


def test_nothing_published_is_a_404(store: LocalStore, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", spool_dir=tmp_path / "spool",
                        nextauth_secret=SECRET)
    with TestClient(create_app(settings, store)) as c:
        r = c.get("/api/export/models", params={"format": "csv"})
    assert r.status_code == 404 and "nightly" in r.json()["detail"]


def test_a_user_exports_their_own_rows_only(tmp_path: Path, store: LocalStore) -> None:
    settings = Settings(data_dir=tmp_path / "data", spool_dir=tmp_path / "spool",
                        nextauth_secret=SECRET, rate_limit_per_minute=10_000,
                        spool_flush_seconds=3600)
    app = create_app(settings, store)
    with TestClient(app) as c:
        mine = auth(make_token(USER_A))
        other = auth(make_token("fedcba9876543210"))
        for i in range(3):
            assert c.post("/api/submit", json=pramana_payload(prompt_id=f"p-{i}"),
                          headers=mine).status_code in (200, 201, 202)
        assert c.post("/api/submit", json=pramana_payload(prompt_id="theirs"),
                      headers=other).status_code in (200, 201, 202)
        app.state.spool.flush(store)
        r = c.get("/api/user/me/export", headers=mine)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.apache.parquet"
        rows = pl.read_parquet(io.BytesIO(r.content))
        assert sorted(rows["prompt_id"].to_list()) == ["p-0", "p-1", "p-2"]
        assert c.get("/api/user/me/export").status_code == 401
