"""Fixtures for the API tests: an app on a temp store and spool, tokens, Pramana payloads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import create_app
from tasks.settings import Settings
from tasks.storage.local import LocalStore

SECRET = "test-nextauth-secret-0123456789abcdef"
USER_A = "0123456789abcdef"
USER_B = "fedcba9876543210"


def make_token(user_id: Any = USER_A, *, secret: str = SECRET, exp_in: float | None = 3600,
               algorithm: str = "HS256", **claims: Any) -> str:
    payload: dict[str, Any] = {"userId": user_id, **claims}
    if exp_in is not None:
        payload["exp"] = int(time.time() + exp_in)
    if user_id is None:
        payload.pop("userId")
    return jwt.encode(payload, secret, algorithm=algorithm)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pramana_payload(**overrides: Any) -> dict[str, Any]:
    """Exactly the fields the Pramana CLI's ``submit`` sends."""
    from tasks.records.schema import output_hash

    body: dict[str, Any] = {
        "model_id": "openai/gpt-4o",
        "prompt_id": "cheap-001",
        "output": "The answer is 6.",
        "score": 1.0,
        "assertion_result": {"passed": True, "details": {"matched": "6"}},
        "latency_ms": 412,
        "suite_hash": "sha256:" + "ab" * 32,
        "suite_version": "1.0.0",
        "temperature": 0.0,
        "seed": 42,
        "runner_version": "0.3.1",
        "timestamp": "2026-11-20T10:00:00.123456+00:00",
    }
    body.update(overrides)
    if "result_hash" not in overrides:
        body["result_hash"] = output_hash(body["model_id"], body["prompt_id"], body["output"])
    return body


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", spool_dir=tmp_path / "spool", nextauth_secret=SECRET,
        rate_limit_per_minute=10_000, spool_flush_seconds=3600,
    )


@pytest.fixture
def app_factory(settings: Settings, store: LocalStore) -> Callable[..., FastAPI]:
    def build(store_: Any = None, **changes: Any) -> FastAPI:
        return create_app(settings.model_copy(update=changes), store_ or store)

    return build


@pytest.fixture
def app(app_factory: Callable[..., FastAPI]) -> FastAPI:
    return app_factory()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def flush(app: FastAPI) -> int:
    return app.state.spool.flush(app.state.store)
