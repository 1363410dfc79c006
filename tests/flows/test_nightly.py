"""The nightly flow end to end under Prefect: compact → aggregate → drift → publish → notify."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.storage.layout import history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.payloads import ModelsPayload, NightlyStatus
from tasks.summaries.publish import MODELS, NIGHTLY_STATUS
from tests.support.demo import build_demo_history

TODAY = date(2026, 11, 30)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A local webhook receiver on a free port; DRIFT_WEBHOOK_URL points at it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DRIFT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.prefect
def test_nightly_flow_publishes_verdicts_and_notifies(
    prefect_harness: None, data_dir: Path, webhook: list[dict[str, Any]]
) -> None:
    from flows.nightly import nightly

    store = LocalStore(data_dir)
    build_demo_history(store, TODAY)
    out = nightly()
    assert out["days"] == 35 and out["aggregated_days"] == 35
    assert out["verdicts"] == {"fake/drifting": "drifting", "fake/stable": "stable"}
    models = ModelsPayload.model_validate_json(store.get(latest_key(MODELS)), strict=True)
    assert [m.verdict for m in models.models] == ["drifting", "stable"]
    assert store.exists(history_key("fake/stable"))
    status = NightlyStatus.model_validate_json(store.get(latest_key(NIGHTLY_STATUS)), strict=True)
    assert status.finished_at and status.drifting == ["fake/drifting"]
    assert status.as_of == TODAY and status.aggregated_days == 35
    # The counts /metrics exposes: what the night did, without parsing its logs.
    assert status.verdicts == {"drifting": 1, "stable": 1}
    assert status.tests and status.tests > 0
    chart = json.loads(store.get(latest_key("chart.json")))
    assert status.rows_aggregated == chart["total_submissions"]  # every day was aggregated
    calls = status.provider_calls
    assert calls is not None and list(calls) == ["fake"] and calls["fake"].rows > 0
    assert out["notified"]["webhook"] is True
    (hook,) = webhook
    assert [m["model_id"] for m in hook["models"]] == ["fake/drifting"]

    # The next night finds nothing new and aggregates nothing, but still publishes.
    again = nightly()
    assert again["aggregated_days"] == 0 and again["verdicts"] == out["verdicts"]
    status = NightlyStatus.model_validate_json(store.get(latest_key(NIGHTLY_STATUS)), strict=True)
    assert status.rows_aggregated == 0 and status.provider_calls == calls


def test_night_counts_rows_and_failed_calls_per_provider() -> None:
    from flows.nightly import night_counts

    d1, d2, d3 = date(2026, 11, 28), date(2026, 11, 29), date(2026, 11, 30)
    daily = pl.DataFrame({
        "date": [d1, d2, d3, d3], "model_id": ["openai/a", "openai/a", "openai/b", "fake/x"],
        "rows": [10, 20, 30, 40], "errors": [10, 1, 2, None]})
    counts = night_counts(daily, aggregated=[d3], recent=[d2, d3])
    assert counts["rows_aggregated"] == 70
    assert {p: (c.rows, c.errors) for p, c in counts["provider_calls"].items()} == {
        "fake": (40, 0), "openai": (50, 3)}  # d1 is outside the recent window
    assert night_counts(pl.DataFrame(), [], []) == {"rows_aggregated": 0, "provider_calls": {}}
