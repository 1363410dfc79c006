"""Serving materialized summary files: an in-memory cache with ETags, and conditional responses.

A local store's file is revalidated by ``stat`` on every read (a few microseconds, and a new
nightly publish is visible at once); a remote store's is fetched again after
``summary_cache_seconds``. Either way a read costs the same whatever the size of the raw data.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from tasks.errors import StorageError
from tasks.storage.base import ObjectStore
from tasks.storage.layout import latest_key

CACHE_CONTROL = "public, max-age=60"


@dataclass(frozen=True, slots=True)
class Summary:
    body: bytes
    etag: str


def make_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class SummaryCache:
    """Summary files by key. ``get`` raises ``KeyError`` for a missing file, as the store does."""

    def __init__(self, store: ObjectStore, ttl_seconds: float = 10.0) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self._local = store.local_path(latest_key("probe")) is not None
        # key -> (validator, summary); validator is a stat tuple (local) or an expiry (remote)
        self._entries: dict[str, tuple[object, Summary]] = {}
        self._lock = threading.Lock()

    async def get(self, key: str) -> Summary:
        if self._local:
            return self._get_local(key)
        return await run_in_threadpool(self._get_remote, key)

    def _get_local(self, key: str) -> Summary:
        path = self.store.local_path(key)
        assert path is not None
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            self._entries.pop(key, None)
            # Let the store tell "not published yet" (KeyError) from "store broken"
            # (StorageError, a 503): a miss is rare, so this costs nothing on the hot path.
            self.store.get(key)
            raise KeyError(key) from None
        validator = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._entries.get(key)
        if cached is not None and cached[0] == validator:
            return cached[1]
        body = self.store.get(key)
        summary = Summary(body, make_etag(body))
        self._entries[key] = (validator, summary)
        return summary

    def _get_remote(self, key: str) -> Summary:
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and isinstance(cached[0], float) and cached[0] > now:
            return cached[1]
        with self._lock:  # one fetch per expiry, not one per waiting request
            cached = self._entries.get(key)
            if cached is not None and isinstance(cached[0], float) and cached[0] > now:
                return cached[1]
            try:
                body = self.store.get(key)
            except StorageError:
                if cached is None:
                    raise
                # Stale-if-error: the last good copy beats a 503 while the store is unreachable.
                self._entries[key] = (now + self.ttl, cached[1])
                return cached[1]
            summary = Summary(body, make_etag(body))
            self._entries[key] = (now + self.ttl, summary)
            return summary


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.strip('"')
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate.strip('"') == bare:
            return True
    return False


def summary_response(summary: Summary, if_none_match: str | None) -> Response:
    """200 with the file, or 304 when the client already has this version."""
    headers = {"ETag": summary.etag, "Cache-Control": CACHE_CONTROL}
    if _matches(if_none_match, summary.etag):
        return Response(status_code=304, headers=headers)
    return Response(summary.body, media_type="application/json", headers=headers)


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or is ``*``): the client's copy is current."""
    return _matches(if_none_match, etag)
