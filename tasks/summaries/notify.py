"""Telling people about drift: a Prefect event per drifting model and an optional webhook.

The event (``plumbline.drift.detected``, resource ``plumbline.model.<model_id>``) lets a Prefect
automation notify whoever cares; the webhook (``DRIFT_WEBHOOK_URL``) is for everything else
(Slack, a pager). An outage is its own kind of news: a model whose availability is ``degraded``
(its error rate rose) gets a ``plumbline.availability.degraded`` event and its own webhook POST
(``"event": "plumbline.availability.degraded"``), whatever its verdict. Nothing here may fail the
night: a failed delivery is logged and reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from tasks.retry import RetryPolicy, parse_retry_after

DRIFT_EVENT = "plumbline.drift.detected"
AVAILABILITY_EVENT = "plumbline.availability.degraded"
logger = logging.getLogger("plumbline.notify")

Emitter = Callable[..., Any]


def model_resource(model_id: str) -> dict[str, str]:
    """The Prefect resource naming a model, so automations can match on it."""
    return {
        "prefect.resource.id": f"plumbline.model.{model_id}",
        "prefect.resource.name": model_id,
        "plumbline.model_id": model_id,
    }


def _summary(model: dict[str, Any]) -> dict[str, Any]:
    # evidence_url: the API path of the model's before/after answers (relative to the API's
    # address); change_point: when the change began. Both null when the night had none.
    keys = ("model_id", "verdict", "pass_rate_recent", "pass_rate_baseline", "consistency",
            "consistency_band", "reasons", "rows_recent", "rows_baseline", "change_point",
            "evidence_url")
    return {k: model.get(k) for k in keys}


def _availability_summary(model: dict[str, Any]) -> dict[str, Any]:
    return {"model_id": model["model_id"], "verdict": model.get("verdict"),
            "availability": model.get("availability"), "rows_recent": model.get("rows_recent"),
            "rows_baseline": model.get("rows_baseline")}


def emit_drift_events(
    models: Sequence[dict[str, Any]], window: dict[str, Any], emit: Emitter | None = None,
    event: str = DRIFT_EVENT, summary: Callable[[dict[str, Any]], dict[str, Any]] = _summary,
) -> int:
    """One ``event`` (``plumbline.drift.detected`` by default) per model; returns how many were
    sent."""
    if emit is None:
        from prefect.events import emit_event

        emit = emit_event
    sent = 0
    for model in models:
        try:
            emit(event=event, resource=model_resource(model["model_id"]),
                 payload={"window": window, **summary(model)})
            sent += 1
        except Exception:  # events are best effort; the summaries are already published
            logger.exception("could not emit %s for %s", event, model["model_id"])
    return sent


# 1 s, 4 s, 15 s between four attempts: a receiver that is briefly down gets about 20 s; a
# Retry-After is honoured up to a minute (the nightly must not hang on a broken webhook).
WEBHOOK_RETRY = RetryPolicy(max_attempts=4, base_delay=1.0, multiplier=4.0, max_delay=15.0,
                            jitter=False, max_retry_after=60.0)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    client: httpx.Client | None = None,
    retry: RetryPolicy = WEBHOOK_RETRY,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST ``payload`` as JSON, retrying timeouts, connection errors, 429 and 5xx.

    Honours ``Retry-After`` (seconds or an HTTP date) when the receiver sends one. Returns
    whether it was delivered; never raises, because a broken webhook must not fail the nightly.
    """
    own = client is None
    client = client or httpx.Client(timeout=timeout_s)
    try:
        attempts = retry.max_attempts
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                response = client.post(url, json=payload)
            except httpx.HTTPError as exc:
                logger.warning("drift webhook attempt %d/%d failed: %s", attempt, attempts, exc)
            else:
                if response.is_success:
                    return True
                logger.warning("drift webhook attempt %d/%d: HTTP %d", attempt, attempts,
                               response.status_code)
                if not _retryable(response):
                    break
                retry_after = parse_retry_after(response.headers)
            if attempt < attempts:
                sleep(retry.delay(attempt, retry_after))
        logger.error("drift webhook %s not delivered after %d attempt(s)", url, attempts)
        return False
    finally:
        if own:
            client.close()


def notify_drift(
    models: Sequence[dict[str, Any]],
    window: dict[str, Any],
    webhook_url: str | None,
    *,
    emit: Emitter | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Events and webhook for the drifting models of a night (nothing when none drift)."""
    drifting = [m for m in models if m.get("verdict") == "drifting"]
    result: dict[str, Any] = {"drifting": [m["model_id"] for m in drifting], "events": 0,
                              "webhook": None}
    if not drifting:
        return result
    result["events"] = emit_drift_events(drifting, window, emit)
    if webhook_url:
        payload = {"event": DRIFT_EVENT, "window": window,
                   "models": [_summary(m) for m in drifting]}
        result["webhook"] = post_webhook(webhook_url, payload, client=client, sleep=sleep)
    return result


def notify_availability(
    models: Sequence[dict[str, Any]],
    window: dict[str, Any],
    webhook_url: str | None,
    *,
    emit: Emitter | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Events and webhook for the models whose availability degraded (nothing when none did)."""
    degraded = [m for m in models
                if (m.get("availability") or {}).get("status") == "degraded"]
    result: dict[str, Any] = {"degraded": [m["model_id"] for m in degraded], "events": 0,
                              "webhook": None}
    if not degraded:
        return result
    result["events"] = emit_drift_events(degraded, window, emit, AVAILABILITY_EVENT,
                                         _availability_summary)
    if webhook_url:
        payload = {"event": AVAILABILITY_EVENT, "window": window,
                   "models": [_availability_summary(m) for m in degraded]}
        result["webhook"] = post_webhook(webhook_url, payload, client=client, sleep=sleep)
    return result
