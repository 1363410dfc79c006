"""Build the configured store from ``Settings``."""

from __future__ import annotations

from tasks.settings import Settings
from tasks.storage.base import ObjectStore
from tasks.storage.local import LocalStore


def open_store(settings: Settings) -> ObjectStore:
    """The store the settings name: a local folder (default) or a B2 bucket."""
    if settings.storage_backend == "b2":
        from tasks.storage.b2 import B2Store

        return B2Store.from_settings(settings)
    return LocalStore(settings.data_dir)
