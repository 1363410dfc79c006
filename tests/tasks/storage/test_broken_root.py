"""A local store whose folder is missing is empty; one whose "folder" is a file is an outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import StorageError
from tasks.storage.local import LocalStore


def test_missing_root_is_an_empty_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not-yet")
    assert store.list("raw/") == []
    with pytest.raises(KeyError):
        store.get("summaries/latest/chart.json")


def test_root_that_is_a_file_is_reported_not_taken_for_no_data(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.write_text("a file where the data folder should be")
    store = LocalStore(root)
    with pytest.raises(StorageError, match="is not a folder"):
        store.get("summaries/latest/chart.json")
    with pytest.raises(StorageError, match="is not a folder"):
        store.list("raw/")

