"""Build the configured store from ``Settings``."""

from __future__ import annotations

from tasks.errors import ConfigError
from tasks.settings import Settings
from tasks.storage.base import ObjectStore
from tasks.storage.local import LocalStore


def open_store(settings: Settings) -> ObjectStore:
    """The store the settings name: a local folder (default) or a B2 bucket.

    Raises ``ConfigError`` naming the setting when the store cannot be used as configured.
    """
    if settings.storage_backend == "b2":
        from tasks.storage.b2 import B2Store

        return B2Store.from_settings(settings)
    root = settings.data_dir
    if root.exists() and not root.is_dir():
        raise ConfigError(f"PLUMBLINE_DATA_DIR={root} exists but is not a folder")
    return LocalStore(root)
