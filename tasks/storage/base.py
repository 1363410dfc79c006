"""The object-store contract every backend meets: atomic put, get, list by prefix, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object as a listing reports it."""

    key: str
    size: int
    modified: datetime


@runtime_checkable
class ObjectStore(Protocol):
    """Flat keys with ``/`` separators, like an S3/B2 bucket.

    ``put`` is atomic: a concurrent reader sees the old object, the whole new one, or nothing; never
    a partial write. ``get`` of a missing key raises ``KeyError``. ``list`` returns every object
    whose key starts with ``prefix``, sorted by key. ``delete`` of a missing key is not an error.
    Operational failures raise ``tasks.errors.StorageError``.

    A backend may also offer ``list_folders(prefix) -> list[str]`` (the immediate "sub-folders"
    of a prefix ending in ``/``); ``child_folders`` uses it when present, so walking the date
    partitions never has to list every file. Likewise ``purge_temporaries(prefix, older_than=)``
    (see ``purge_temporaries`` below) and ``public_name()`` (see ``public_name``).
    """

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def describe(self) -> str:
        """Where the data lives, for people (a folder, a bucket)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for the key when the backend has one (lets Polars scan in place)."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root or are not plain relative paths."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key: {key!r}")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid object key: {key!r}")
    return key


def child_folders(store: ObjectStore, prefix: str) -> list[str]:
    """The immediate sub-folders of ``prefix`` (each ending in ``/``), sorted.

    Uses the backend's ``list_folders`` when it has one (a directory scan, a delimiter listing on
    B2); otherwise derives the folders from a full listing, which is correct but touches every key.
    """
    if prefix and not prefix.endswith("/"):
        raise ValueError(f"folder prefix must end with '/': {prefix!r}")
    native = getattr(store, "list_folders", None)
    if callable(native):
        folders: list[str] = native(prefix)
        return folders
    found = {
        prefix + rest.split("/", 1)[0] + "/"
        for o in store.list(prefix)
        if "/" in (rest := o.key[len(prefix):])
    }
    return sorted(found)


def purge_temporaries(
    store: ObjectStore, prefix: str = "", *, older_than: timedelta | None = None
) -> int:
    """Remove what interrupted writes left below ``prefix``; return how many were removed.

    A write killed halfway leaves bytes no listing shows: a ``.tmp-*`` file on the local store,
    an unfinished large-file upload (its parts) on B2. They may hold a user's rows, so GDPR
    operations remove them (``older_than=None``: all of them) and compaction removes stale ones.
    ``older_than`` spares younger leftovers, which may belong to a write still under way. A
    backend without such leftovers (or a test wrapper) has nothing to remove: 0.
    """
    native = getattr(store, "purge_temporaries", None)
    if callable(native):
        return int(native(prefix, older_than=older_than))
    return 0


def public_name(store: ObjectStore) -> str:
    """A name for the backend safe to show anyone (``local``, ``b2:<bucket>``): unlike
    ``describe()`` it holds no server path."""
    native = getattr(store, "public_name", None)
    if callable(native):
        return str(native())
    return type(store).__name__
