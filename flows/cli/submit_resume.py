"""The progress file of ``plumbline submit``: which results an API already acknowledged, so that an
interrupted upload resumes where it stopped instead of sending everything again.

One file per (source, API URL, who submits), named by a hash of the three, in
``{PLUMBLINE_DATA_DIR}/submit/``. Its first line is a header; every later line lists the digests
of the results one request got acknowledged (a batch, or one result). A result's digest is the
sha256 of the exact JSON sent for it, so a changed file, batch size or version only means more is
sent again, never that something is skipped that was not acknowledged.

The file is an optimisation, not the guarantee: the API deduplicates by each result's identity
(docs/api.md), so a batch sent again after a kill between send and acknowledgement is answered
``duplicate`` and stored once. That is why acknowledgements are only flushed to the OS (a killed
process loses nothing), not fsynced. The header is fsynced: it holds the base timestamp given to
results without one, and those are only recognised as the same results if it survives.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tasks.errors import SubmitError

FORMAT = 1
DIGEST_CHARS = 32  # 128 bits of sha256: no two results of an upload collide
_DIGEST_RE = re.compile(f"[0-9a-f]{{{DIGEST_CHARS}}}")
# A line longer than this is not one this module wrote (at most 500 digests per request).
MAX_LINE_CHARS = 64 * 1024


def digest(body: bytes) -> str:
    """A result's identity in the progress file: the hash of the JSON sent for it."""
    return hashlib.sha256(body).hexdigest()[:DIGEST_CHARS]


def who(token: str | None) -> str:
    """Who submits, for the file's name: a hash of the token (never the token), or anonymous.

    A new token starts a new file: results acknowledged for one user say nothing about another.
    """
    if not token:
        return "anonymous"
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class ProgressFile:
    """The acknowledged results of one upload, held open and locked while it runs.

    ``open`` reads what an earlier, interrupted run recorded (a torn last line from a kill is
    ignored), or starts the file; ``record`` appends one request's acknowledged digests;
    ``finish`` removes the file once everything is acknowledged.
    """

    def __init__(self, path: Path, fh: IO[str], acked: set[str], base_timestamp: datetime,
                 resumed: bool) -> None:
        self.path = path
        self._fh = fh
        self.acked = acked
        self.base_timestamp = base_timestamp
        self.resumed = resumed

    @classmethod
    def open(cls, folder: Path, *, source: str, api_url: str, token: str | None,
             restart: bool = False, now: datetime | None = None) -> ProgressFile:
        """The progress file of this upload; ``restart`` forgets what it recorded."""
        api_url = api_url.rstrip("/")
        key = hashlib.sha256(
            json.dumps([source, api_url, who(token)]).encode()
        ).hexdigest()[:32]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.jsonl"
        fh = path.open("a+", encoding="utf-8")
        try:
            try:
                # Two uploads appending to one file would each skip what the other sent.
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SubmitError(
                    f"another `plumbline submit` of {source} to {api_url} is running "
                    f"(its progress file {path} is locked)"
                ) from None
            fh.seek(0)
            text = "" if restart else fh.read()
            header, acked = _parse(text, source, api_url)
            if header is None:
                base = (now or datetime.now(UTC)).astimezone(UTC)
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps({
                    "plumbline_submit": FORMAT, "source": source, "api_url": api_url,
                    "base_timestamp": base.isoformat(),
                }) + "\n")
                _sync(fh, path)
                return cls(path, fh, set(), base, resumed=False)
            if text and not text.endswith("\n"):
                fh.write("\n")  # after a torn line: the next record starts on a line of its own
                fh.flush()
            return cls(path, fh, acked, header, resumed=True)
        except BaseException:
            fh.close()
            raise

    def record(self, digests: Iterable[str]) -> None:
        """Note results the API acknowledged (written through to the OS before returning)."""
        new = list(digests)
        self.acked.update(new)
        self._fh.write(json.dumps({"acked": new}, separators=(",", ":")) + "\n")
        self._fh.flush()

    def finish(self) -> None:
        """Everything was acknowledged: remove the file (a later run starts afresh)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()  # releases the lock


def _sync(fh: IO[str], path: Path) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _parse(text: str, source: str, api_url: str) -> tuple[datetime | None, set[str]]:
    """(base timestamp, acknowledged digests) from a file's text; (None, ∅) when unusable.

    Read as untrusted: a header for another upload, or any line not in the shape written here,
    is not believed (the line is skipped; a bad header means starting over, which only sends
    again what the API will answer ``duplicate``).
    """
    lines = text.split("\n")
    head = _json_line(lines[0])
    if (head is None or head.get("plumbline_submit") != FORMAT
            or head.get("source") != source or head.get("api_url") != api_url):
        return None, set()
    try:
        base = datetime.fromisoformat(str(head.get("base_timestamp")))
    except ValueError:
        return None, set()
    if base.tzinfo is None:
        return None, set()
    acked: set[str] = set()
    for line in lines[1:]:
        entry = _json_line(line)
        digests = entry.get("acked") if entry is not None else None
        if isinstance(digests, list) and all(
            isinstance(d, str) and _DIGEST_RE.fullmatch(d) for d in digests
        ):
            acked.update(digests)
    return base.astimezone(UTC), acked


def _json_line(line: str) -> dict[str, Any] | None:
    if not line or len(line) > MAX_LINE_CHARS:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
