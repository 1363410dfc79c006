"""Object storage: one contract (``ObjectStore``), a local-folder backend and a B2 backend."""

from tasks.storage.base import ObjectInfo, ObjectStore
from tasks.storage.factory import open_store
from tasks.storage.local import LocalStore

__all__ = ["LocalStore", "ObjectInfo", "ObjectStore", "open_store"]
