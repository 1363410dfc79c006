"""The embedded default store: a local folder. Writes go to a temp file, fsync, then rename.

Error messages name the key and the system's reason but not the folder: they reach API clients
(a 503's body, ``/api/health``), who have no business knowing the server's paths. The exception
chain keeps the full ``OSError`` (with its path) for the server's log.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.errors import StorageError
from tasks.storage.base import ObjectInfo, check_key

# Temp files live beside their target (same filesystem, so rename is atomic) with this prefix;
# listings skip them, so a reader never sees a half-written object. A process killed mid-write
# leaves one behind: ``purge_temporaries`` finds them (GDPR operations, compaction).
TMP_PREFIX = ".tmp-"
# `delete` prunes empty partition folders; a concurrent `put` into the same folder can lose the
# race (its folder vanishes between mkdir and mkstemp) and simply tries again.
_PUT_ATTEMPTS = 20


class LocalStore:
    """An ``ObjectStore`` on a folder. Keys map to paths below ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        check_key(key)
        if any(part.startswith(TMP_PREFIX) for part in key.split("/")):
            raise ValueError(f"invalid object key: {key!r} (the {TMP_PREFIX} prefix is reserved)")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        for attempt in range(_PUT_ATTEMPTS):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
            except (FileNotFoundError, FileExistsError) as exc:
                # mkdir saw the folder, then it was pruned before mkstemp (or mkdir's own
                # exist_ok re-check lost the same race): go again.
                if attempt + 1 < _PUT_ATTEMPTS:
                    continue
                raise StorageError(f"could not write: {_reason(exc)}", key=key) from exc
            except OSError as exc:
                raise StorageError(f"could not write: {_reason(exc)}", key=key) from exc
            break
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                # The temp file keeps the folder non-empty, so no concurrent prune can remove it
                # before this rename.
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"could not write: {_reason(exc)}", key=key) from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._check_root(key)
            raise KeyError(key) from None
        except OSError as exc:
            raise StorageError(f"could not read: {_reason(exc)}", key=key) from exc

    def _check_root(self, key: str | None = None) -> None:
        # A missing root is an empty store (a fresh install); a root that is a file is a broken
        # store, and must not pass for "no data yet" (health checks would say ok).
        if self.root.exists() and not self.root.is_dir():
            raise StorageError("the data folder (PLUMBLINE_DATA_DIR) is not a folder", key=key)

    def _walk(self, start: Path, prefix: str, *, temp_folders: bool
              ) -> Iterator[tuple[str, str, list[str]]]:
        """(folder path, its key prefix, file names) below ``start``, walking
        only into folders the key ``prefix`` can match (listing one day never walks its
        siblings); temp folders only with ``temp_folders``."""
        def _raise(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):  # a folder pruned while we walked
                raise StorageError(f"could not list: {_reason(exc)}", key=prefix) from exc

        for dirpath, dirnames, filenames in os.walk(start, onerror=_raise):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = sorted(
                d for d in dirnames
                if (temp_folders or not d.startswith(TMP_PREFIX))
                and ((rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/"))
            )
            yield dirpath, rel_dir, filenames

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Walk only below the deepest folder the prefix names, so a date-partitioned prefix
        # touches only its partitions.
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            self._check_root()
            return []
        found: list[ObjectInfo] = []
        for dirpath, rel_dir, filenames in self._walk(start, prefix, temp_folders=False):
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = rel_dir + name
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # deleted while we walked
                found.append(
                    ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC))
                )
        found.sort(key=lambda o: o.key)
        return found

    def list_folders(self, prefix: str = "") -> list[str]:
        """The immediate sub-folders of ``prefix`` (which ends in ``/`` or is empty)."""
        start = self.root / prefix if prefix else self.root
        try:
            with os.scandir(start) as entries:
                names = [
                    e.name for e in entries
                    if e.is_dir(follow_symlinks=False) and not e.name.startswith(TMP_PREFIX)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"could not list: {_reason(exc)}", key=prefix) from exc
        return sorted(f"{prefix}{name}/" for name in names)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a "folder" is not an object
        except OSError as exc:
            raise StorageError(f"could not delete: {_reason(exc)}", key=key) from exc
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        # Drop now-empty partition folders so listings stay fast (and a deleted user's id does not
        # live on as a folder name); never the root itself.
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def purge_temporaries(self, prefix: str = "", *, older_than: timedelta | None = None) -> int:
        """Delete the temp files interrupted writes left below ``prefix``; return how many.

        ``older_than`` spares files modified more recently (a write may still be under way);
        ``None`` deletes them all, which makes a concurrent write into the same folder fail
        (it raises, nothing is lost): GDPR operations accept that to leave nothing behind.
        """
        folder, _, _ = prefix.rpartition("/")
        if folder:
            check_key(folder)
        start = self.root / folder if folder else self.root
        cutoff = None if older_than is None else time.time() - older_than.total_seconds()
        removed = 0
        for dirpath, rel_dir, filenames in self._walk(start, prefix, temp_folders=True):
            here = 0
            for name in filenames:
                if not name.startswith(TMP_PREFIX) or not (rel_dir + name).startswith(prefix):
                    continue
                path = Path(dirpath, name)
                try:
                    if cutoff is not None and path.stat().st_mtime > cutoff:
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue  # the write finished (renamed it) or gave up meanwhile
                except OSError as exc:
                    raise StorageError(
                        f"could not delete a temporary file: {_reason(exc)}", key=rel_dir + name
                    ) from exc
                here += 1
            if here:
                removed += here
                self._prune(Path(dirpath))
        return removed

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def describe(self) -> str:
        return f"local folder {self.root}"

    def public_name(self) -> str:
        return "local"

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def _reason(exc: OSError) -> str:
    """The system's reason without the path ("No space left on device")."""
    return exc.strerror or type(exc).__name__


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable (POSIX); harmless where unsupported.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
