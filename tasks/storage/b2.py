"""The Backblaze B2 backend through ``b2sdk``: a private bucket behind the ``ObjectStore`` contract.

B2 gives us what the contract needs natively: an upload becomes visible only once complete (so
``put`` is atomic), and listings are sorted by name. What it does not give us for free:

- re-uploading a name adds a *version*; ``delete`` removes every version, so deleted data
  (GDPR!) is really gone rather than hidden behind a newer version;
- transient failures (HTTP 5xx, 429, timeouts, dropped connections, an upload that b2sdk itself
  gave up on) are retried here with exponential backoff; anything else becomes a
  ``StorageError`` naming the key;
- an upload big enough for b2sdk to send as a *large file* (in parts) that dies halfway leaves an
  unfinished large file: its parts hold data but no listing shows them, so
  ``purge_temporaries`` cancels them (GDPR operations under the user's partitions, compaction
  when they are stale).
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tasks.errors import ConfigError, StorageError
from tasks.storage.base import ObjectInfo, check_key

if TYPE_CHECKING:
    from b2sdk.v2 import B2Api, Bucket

    from tasks.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS = 5
# First retry after ~0.5 s, doubling, capped: a B2 "503 service unavailable" usually clears
# within seconds, and a nightly task can afford to wait rather than fail.
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


def _transient_types() -> tuple[type[BaseException], ...]:
    from b2sdk.v2 import exception as b2exc

    return (
        b2exc.ServiceError,
        b2exc.TooManyRequests,
        b2exc.B2ConnectionError,
        b2exc.B2RequestTimeout,
        b2exc.RequestTimeout,
        b2exc.ConnectionReset,
        b2exc.BrokenPipe,
        b2exc.TruncatedOutput,
        b2exc.ChecksumMismatch,
        # b2sdk retries an upload itself (5 tries, no pause); when it gives up we back off and
        # try the whole upload again.
        b2exc.MaxRetriesExceeded,
        b2exc.AlreadyFailed,
    )


class B2Store:
    """An ``ObjectStore`` on one B2 bucket.

    Built by ``from_settings`` in production; tests hand in a bucket from a ``B2Api`` backed by
    b2sdk's ``RawSimulator`` (conventions #7: inject, don't patch).
    """

    def __init__(
        self,
        bucket: Bucket,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.bucket = bucket
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._transient = _transient_types()

    @classmethod
    def from_settings(cls, settings: Settings, api: B2Api | None = None) -> B2Store:
        """Authorize with the settings' key and open their bucket, which must be private.

        ``api`` lets a caller supply a ``B2Api`` (tests: one on b2sdk's simulator); by default a
        real one talking to Backblaze is built.
        """
        from b2sdk.v2 import B2Api, InMemoryAccountInfo
        from b2sdk.v2 import exception as b2exc

        key_id, app_key, bucket_name = (
            settings.b2_key_id, settings.b2_application_key, settings.b2_bucket_name,
        )
        if not (key_id and app_key and bucket_name):
            raise ConfigError(
                "B2 storage needs B2_APPLICATION_KEY_ID (or B2_KEY_ID), B2_APPLICATION_KEY and "
                "B2_BUCKET_NAME"
            )
        api = api or B2Api(InMemoryAccountInfo())
        try:
            api.authorize_account(
                realm="production", application_key_id=key_id, application_key=app_key
            )
        except b2exc.Unauthorized as exc:
            raise ConfigError(
                f"B2 refused the key B2_APPLICATION_KEY_ID={key_id}: {exc}"
            ) from exc
        except b2exc.B2Error as exc:
            raise StorageError(f"could not reach B2 to authorize: {exc}") from exc
        try:
            bucket = api.get_bucket_by_name(bucket_name)
        except b2exc.NonExistentBucket as exc:
            raise ConfigError(
                f"B2_BUCKET_NAME={bucket_name}: no such bucket for this key"
            ) from exc
        except b2exc.B2Error as exc:
            raise StorageError(f"could not open B2 bucket {bucket_name}: {exc}") from exc
        bucket_type = getattr(bucket, "type_", None)
        if bucket_type is not None and bucket_type != "allPrivate":
            # Raw data includes user ids and model outputs: a public bucket would publish them.
            raise ConfigError(
                f"B2_BUCKET_NAME={bucket_name} is {bucket_type}; Plumbline needs a private "
                "(allPrivate) bucket"
            )
        return cls(bucket, max_attempts=settings.b2_max_attempts)

    # -- retries ---------------------------------------------------------------------------

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        from b2sdk.v2 import exception as b2exc

        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except self._transient as exc:
                if attempt == self.max_attempts:
                    raise StorageError(
                        f"B2 {op} in bucket {self.bucket.name} failed after {attempt} "
                        f"attempts: {exc}",
                        key=key,
                    ) from exc
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + random.random()  # jitter: workers that failed together spread out
                log.warning("B2 %s %s: %s; retry %d in %.1fs", op, key, exc, attempt, delay)
                self._sleep(delay)
            except b2exc.B2Error as exc:
                raise StorageError(
                    f"B2 {op} in bucket {self.bucket.name} failed: {exc}", key=key
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the contract ----------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._call("upload", key, lambda: self.bucket.upload_bytes(data, key))

    def get(self, key: str) -> bytes:
        from b2sdk.v2 import exception as b2exc

        check_key(key)

        def download() -> bytes | None:
            try:
                downloaded = self.bucket.download_file_by_name(key)
            except b2exc.FileNotPresent:
                return None
            buf = io.BytesIO()
            downloaded.save(buf)
            return buf.getvalue()

        data = self._call("download", key, download)
        if data is None:
            raise KeyError(key)
        return data

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # B2 lists "folders"; list the deepest folder the prefix names and filter the rest.
        folder = prefix.rpartition("/")[0]
        folder = folder + "/" if folder else ""

        def ls() -> list[ObjectInfo]:
            return [
                ObjectInfo(
                    fv.file_name,
                    fv.size,
                    datetime.fromtimestamp(fv.upload_timestamp / 1000, tz=UTC),
                )
                for fv, _ in self.bucket.ls(folder, latest_only=True, recursive=True)
                if fv.file_name.startswith(prefix)
            ]

        found = self._call("list", prefix, ls)
        found.sort(key=lambda o: o.key)
        return found

    def list_folders(self, prefix: str = "") -> list[str]:
        """The immediate sub-folders of ``prefix``: a delimiter listing, one call per folder."""

        def ls() -> list[str]:
            return sorted(
                {folder for _, folder in self.bucket.ls(prefix, recursive=False) if folder}
            )

        return self._call("list", prefix, ls)

    def delete(self, key: str) -> None:
        check_key(key)

        def delete_all_versions() -> None:
            # Every version, hide markers included: after this the name has no history at all.
            for version in list(self.bucket.list_file_versions(key)):
                self.bucket.delete_file_version(version.id_, version.file_name)

        self._call("delete", key, delete_all_versions)

    def purge_temporaries(self, prefix: str = "", *, older_than: timedelta | None = None) -> int:
        """Cancel the unfinished large-file uploads below ``prefix`` (all of them, or those
        started more than ``older_than`` ago); return how many were cancelled."""
        cutoff_ms = (
            None if older_than is None else (time.time() - older_than.total_seconds()) * 1000
        )
        from b2sdk.v2 import exception as b2exc

        session = self.bucket.api.session

        def cancel() -> int:
            # The session's listing, not Bucket.list_unfinished_large_files: only the raw answer
            # carries each upload's start time.
            stale: list[str] = []
            start: str | None = None
            while True:
                page = session.list_unfinished_large_files(
                    self.bucket.id_, start_file_id=start, max_file_count=100,
                    prefix=prefix or None,
                )
                for f in page["files"]:
                    if cutoff_ms is None or f.get("uploadTimestamp", 0) <= cutoff_ms:
                        stale.append(f["fileId"])
                start = page.get("nextFileId")
                if start is None:
                    break
            cancelled = 0
            for file_id in stale:
                try:
                    self.bucket.cancel_large_file(file_id)
                except b2exc.FileNotPresent:
                    continue  # finished or cancelled since the listing
                cancelled += 1
            return cancelled

        return self._call("cancel unfinished uploads", prefix, cancel)

    def exists(self, key: str) -> bool:
        from b2sdk.v2 import exception as b2exc

        check_key(key)

        def probe() -> bool:
            try:
                self.bucket.get_file_info_by_name(key)
            except b2exc.FileNotPresent:
                return False
            return True

        return self._call("stat", key, probe)

    def describe(self) -> str:
        return f"B2 bucket {self.bucket.name}"

    def public_name(self) -> str:
        return f"b2:{self.bucket.name}"

    def local_path(self, key: str) -> Path | None:
        return None
