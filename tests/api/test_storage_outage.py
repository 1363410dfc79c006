"""Reads during a storage outage are 503s, never an empty "no data yet" answer."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from tasks.settings import Settings
from tasks.storage.local import LocalStore


def test_api_reads_report_a_broken_store_as_503_not_as_no_data(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.write_text("a file where the data folder should be")
    app = create_app(Settings(data_dir=tmp_path / "other", spool_dir=tmp_path / "spool"),
                     LocalStore(root))
    with TestClient(app) as client:
        for path in ("/api/data/chart", "/api/models", "/api/drift", "/api/health"):
            assert client.get(path).status_code == 503, path
