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
from fastapi.testclient import TestClient

from api import create_app
from tasks.records.schema import output_hash
from tasks.settings import Settings
from tasks.storage.layout import MODEL_HISTORY, evidence_key, history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.payloads import ModelEvidencePayload, ModelsPayload, NightlyStatus
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
    prefect_harness: None, data_dir: Path, tmp_path: Path, webhook: list[dict[str, Any]]
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
    # Before/after for the drifting model only, linked from models.json and the webhook, and
    # when it started (the demo's drift day).
    assert store.exists(evidence_key("fake/drifting"))
    assert not store.exists(evidence_key("fake/stable"))
    evidence = ModelEvidencePayload.model_validate_json(store.get(evidence_key("fake/drifting")))
    assert evidence.prompts and all(p.baseline.output != p.recent.output
                                    for p in evidence.prompts)
    drifting, stable = models.models
    assert drifting.evidence_url == hook["models"][0]["evidence_url"] == (
        "/api/models/fake/drifting/evidence")
    assert drifting.change_point is not None and drifting.change_point.date == date(2026, 11, 26)
    assert any("on or about 2026-11-26" in r for r in drifting.reasons)
    assert stable.evidence_url is None and stable.change_point is None
    settings = Settings(data_dir=data_dir, spool_dir=tmp_path / "spool", rate_limit_per_minute=0,
                        spool_flush_seconds=3600)
    with TestClient(create_app(settings, store)) as client:
        served = client.get("/api/models/fake/drifting/evidence")
        assert served.status_code == 200 and served.content == store.get(
            evidence_key("fake/drifting"))
        assert client.get("/api/models/fake/stable/evidence").status_code == 404

    # The next night finds nothing new and aggregates nothing, but still publishes.
    again = nightly()
    assert again["aggregated_days"] == 0 and again["verdicts"] == out["verdicts"]
    status = NightlyStatus.model_validate_json(store.get(latest_key(NIGHTLY_STATUS)), strict=True)
    assert status.rows_aggregated == 0 and status.provider_calls == calls


def _forged(i: int) -> dict[str, Any]:
    """One of the issue's forged results: fake__stable, failing, each a distinct submission."""
    body = {"model_id": "fake__stable", "prompt_id": f"cheap-{i % 8:03d}",
            "output": "wrong", "score": 0.0, "assertion_result": {"passed": False},
            "timestamp": f"{TODAY.isoformat()}T12:00:00.{i:06d}+00:00"}
    body["result_hash"] = output_hash(body["model_id"], body["prompt_id"], body["output"])
    return body


@pytest.mark.prefect
def test_anonymous_lookalike_submissions_cannot_rewrite_a_models_history(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16, item 1 (and 2): 210 anonymous results for `fake__stable` used to land in
    `fake/stable`'s history file. Now fake/stable's history, verdict and figures stay exactly
    as they were; fake__stable gets a history of its own, labelled community, and counts only
    when the operator allows anonymous rows (then capped like one contributor)."""
    from flows.nightly import nightly

    store = LocalStore(data_dir)
    build_demo_history(store, TODAY)
    nightly()
    settings = Settings(data_dir=data_dir, spool_dir=tmp_path / "spool",
                        rate_limit_per_minute=0, spool_flush_seconds=3600)
    app = create_app(settings, store)
    with TestClient(app) as client:
        history = client.get("/api/models/fake/stable/history")
        assert history.status_code == 200
        before = {m["model_id"]: m for m in client.get("/api/models").json()["models"]}

        r = client.post("/api/submit/batch", json={"results": [_forged(i) for i in range(210)]})
        assert r.status_code == 200 and r.json()["accepted"] == 210
        assert app.state.spool.flush(store) == 210
        # Before any nightly: the lookalike is not served fake/stable's file.
        assert client.get("/api/models/fake__stable/history").status_code == 404

        def after_night() -> dict[str, Any]:
            out = nightly()
            assert client.get("/api/models/fake/stable/history").content == history.content
            models = {m["model_id"]: m for m in client.get("/api/models").json()["models"]}
            assert models["fake/stable"] == before["fake/stable"]
            assert out["verdicts"] == {"fake/drifting": "drifting", "fake/stable": "stable"}
            files = [o.key for o in store.list(f"{MODEL_HISTORY}/")]
            assert out["history"] == f"{len(files)} file(s)"  # the count is the files there
            return {"out": out, "models": models, "files": files}

        # Default: anonymous rows do not count at all.
        night = after_night()
        assert len(night["files"]) == 2 and "fake__stable" not in night["models"]
        assert client.get("/api/models/fake__stable/history").status_code == 404

        # Allowed: fake__stable gets its own community history; 50 of the 210 count.
        monkeypatch.setenv("COMMUNITY_ALLOW_ANONYMOUS", "true")
        night = after_night()
        assert len(night["files"]) == 3
        own = client.get("/api/models/fake__stable/history").json()
        assert own["model_id"] == "fake__stable" and own["days"] == []
        (day,) = own["community_days"]
        assert day == {**day, "date": TODAY.isoformat(), "evidence": "community", "rows": 50,
                       "pass_rate": 0.0}
        entry = night["models"]["fake__stable"]
        assert entry["verdict"] == "insufficient_data" and entry["rows_recent"] == 0
        assert entry["community"]["evidence"] == "community"
        assert entry["community"]["rows_recent"] == 50
        assert night["out"]["community_verdicts"] == {"fake__stable": "insufficient_data"}


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
