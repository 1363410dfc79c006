"""The API factory: health and chart read only the materialized summary files."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api import create_app
from tasks.settings import Settings
from tasks.storage.layout import latest_key


def _client(store) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(Settings(data_dir=store.root), store))


def test_health_before_any_nightly_run(store) -> None:  # type: ignore[no-untyped-def]
    body = _client(store).get("/api/health").json()
    assert body["status"] == "ok" and body["last_nightly"] is None and body["version"]


def test_chart_is_empty_before_the_first_nightly(store) -> None:  # type: ignore[no-untyped-def]
    assert _client(store).get("/api/data/chart").json() == {
        "data": [], "models": [], "total_submissions": 0}


def test_chart_serves_the_materialized_file_not_raw_data(store) -> None:  # type: ignore[no-untyped-def]
    chart = {"data": [{"date": "2026-11-01", "fake/stable": 24}], "models": ["fake/stable"],
             "total_submissions": 24}
    store.put(latest_key("chart.json"), json.dumps(chart).encode())
    # Raw files that disagree with the summary must not be read by the endpoint.
    store.put("raw/year=2026/month=11/day=01/user=scheduler/x.parquet", b"not parquet")
    res = _client(store).get("/api/data/chart")
    assert res.status_code == 200 and res.json() == chart
