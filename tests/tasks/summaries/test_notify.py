"""Drift notifications: Prefect events per drifting model, a retried webhook that never fails
the night."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tasks.summaries.notify import (
    AVAILABILITY_EVENT,
    DRIFT_EVENT,
    WEBHOOK_RETRY,
    notify_availability,
    notify_drift,
    post_webhook,
)

WINDOW = {"as_of": "2026-11-30", "recent_days": 7, "baseline_days": 28}
MODELS = [
    {"model_id": "fake/drifting", "verdict": "drifting", "reasons": ["latency up"],
     "pass_rate_recent": 0.6, "pass_rate_baseline": 0.9, "consistency": 1.0,
     "consistency_band": "stable", "rows_recent": 168, "rows_baseline": 672,
     "change_point": {"date": "2026-11-26", "earliest": "2026-11-25", "latest": "2026-11-26",
                      "metric": "latency_ms"},
     "evidence_url": "/api/models/fake/drifting/evidence"},
    {"model_id": "fake/stable", "verdict": "stable", "reasons": []},
]


class Recorder:
    """Stands in for ``prefect.events.emit_event`` (the network edge to the Prefect server)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.events.append(kwargs)


def _client(statuses: list[int], seen: list[dict[str, Any]]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, headers={"Retry-After": "0"} if status == 429 else {})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_event_per_drifting_model_and_one_webhook() -> None:
    emit, seen = Recorder(), []
    out = notify_drift(MODELS, WINDOW, "https://hooks.example/drift", emit=emit,
                       client=_client([], seen), sleep=lambda s: None)
    assert out == {"drifting": ["fake/drifting"], "events": 1, "webhook": True}
    (event,) = emit.events
    assert event["event"] == DRIFT_EVENT
    assert event["resource"]["prefect.resource.id"] == "plumbline.model.fake/drifting"
    assert event["payload"]["window"] == WINDOW
    (body,) = seen
    assert body["event"] == DRIFT_EVENT and [m["model_id"] for m in body["models"]] == [
        "fake/drifting"]
    # Where to look (the before/after answers) and when it started, per flagged model.
    (model,) = body["models"]
    assert model["evidence_url"] == "/api/models/fake/drifting/evidence"
    assert model["change_point"]["date"] == "2026-11-26"
    assert event["payload"]["evidence_url"] == model["evidence_url"]


def test_nothing_sent_when_nothing_drifts() -> None:
    emit, seen = Recorder(), []
    out = notify_drift(MODELS[1:], WINDOW, "https://hooks.example/drift", emit=emit,
                       client=_client([], seen))
    assert out["events"] == 0 and out["webhook"] is None and not seen and not emit.events


def test_webhook_retries_server_errors_then_delivers() -> None:
    seen: list[dict[str, Any]] = []
    delays: list[float] = []
    ok = post_webhook("https://hooks.example/drift", {"x": 1}, client=_client([503, 429], seen),
                      sleep=delays.append)
    assert ok and len(seen) == 3
    assert delays == [1.0, 0.0]  # the 429's Retry-After: 0 wins over the backoff


def test_webhook_backs_off_1_4_15_seconds_and_caps_retry_after() -> None:
    delays: list[float] = []
    ok = post_webhook("https://hooks.example/drift", {"x": 1}, client=_client([503] * 4, []),
                      sleep=delays.append)
    assert not ok and delays == [1.0, 4.0, 15.0]
    assert WEBHOOK_RETRY.delay(1, 3600.0) == 60.0  # a minute at most: the nightly must go on


def test_webhook_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with caplog.at_level(logging.WARNING, logger="plumbline.notify"):
        ok = post_webhook("https://hooks.example/drift", {"x": 1}, client=client,
                          retry=replace(WEBHOOK_RETRY, max_attempts=3), sleep=lambda s: None)
    assert ok is False
    assert "not delivered after 3 attempt(s)" in caplog.text


def test_client_error_is_not_retried() -> None:
    seen: list[dict[str, Any]] = []
    ok = post_webhook("https://hooks.example/drift", {"x": 1}, client=_client([404], seen),
                      sleep=lambda s: None)
    assert ok is False and len(seen) == 1


def test_event_failure_does_not_stop_the_others() -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("no events client")

    out = notify_drift(MODELS, WINDOW, None, emit=broken)
    assert out["events"] == 0 and out["drifting"] == ["fake/drifting"]


def test_a_degraded_model_gets_its_own_event_and_webhook_whatever_its_verdict() -> None:
    outage = {"status": "degraded", "error_rate_recent": 0.094, "error_rate_baseline": 0.01,
              "top_error": "HTTP 503", "reasons": ["error rate 1.0% → 9.4%"]}
    models = [{**MODELS[1], "availability": outage},
              {**MODELS[0], "availability": {**outage, "status": "ok"}}]
    emit, seen = Recorder(), []
    out = notify_availability(models, WINDOW, "https://hooks.example/drift", emit=emit,
                              client=_client([], seen), sleep=lambda s: None)
    assert out == {"degraded": ["fake/stable"], "events": 1, "webhook": True}
    (event,) = emit.events
    assert event["event"] == AVAILABILITY_EVENT
    assert event["payload"]["availability"]["top_error"] == "HTTP 503"
    (body,) = seen
    assert body["event"] == AVAILABILITY_EVENT
    assert body["models"] == [{"model_id": "fake/stable", "verdict": "stable",
                               "availability": outage, "rows_recent": None,
                               "rows_baseline": None}]
    # The quality notification is unmoved by the outage: only the drifting model.
    assert notify_drift(models, WINDOW, None, emit=Recorder())["drifting"] == ["fake/drifting"]


def test_no_availability_news_when_every_model_answered() -> None:
    emit, seen = Recorder(), []
    out = notify_availability(MODELS, WINDOW, "https://hooks.example/drift", emit=emit,
                              client=_client([], seen))
    assert out == {"degraded": [], "events": 0, "webhook": None} and not seen and not emit.events
