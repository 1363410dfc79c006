"""Shared fixtures: a store in a temp folder, and one Prefect test harness for the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No internet here: Prefect's telemetry would only log errors. Must be set before prefect imports.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

from tasks.storage.local import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "data")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's engine with a temporary database, started once (10-25 s) for all flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the flows' settings at a temp folder (they read PLUMBLINE_DATA_DIR)."""
    path = tmp_path / "data"
    monkeypatch.setenv("PLUMBLINE_DATA_DIR", str(path))
    monkeypatch.setenv("PLUMBLINE_STORAGE", "local")
    return path
