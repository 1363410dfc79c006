"""``GET /api/health``: can storage be read and written, can the spool write, did the last flush
succeed; plus the last nightly run, the version and the spool backlog.

Any failing check makes the answer ``degraded`` with HTTP 503, so a monitor or a load balancer
sees an outage that submissions would hit. The probes write (a small object under
``state/health/`` in the store, a few kB in the spool), and the route is exempt from the rate
limit (monitors poll it), so one ``HealthProbe`` per app runs them at most once per
``PROBE_SECONDS``; requests in between get its last result. The flush error and the backlog are
read live.

Nothing in the answer names a server path: the store is described as ``local`` or
``b2:<bucket>``, and every error text passes through ``public_text``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import FlusherDep, SpoolDep, StoreDep
from api.schemas import HealthResponse
from api.spool import Spool
from tasks import __version__
from tasks.storage.base import ObjectStore, public_name
from tasks.storage.layout import health_probe_key, latest_key
from tasks.summaries.payloads import NIGHTLY_STATUS, NightlyStatus, parse_summary

router = APIRouter(tags=["health"])

# Often enough for a monitor polling every 10-30 s to see a failure on its next poll; rarely
# enough that polling in a loop costs the store at most one small upload and delete per 5 s.
PROBE_SECONDS = 5.0
_PROBE_BYTES = b"plumbline health probe"
# Whatever still looks like an absolute path after the known folders are replaced (an error text
# from a library that quotes a file name): a "/" not preceded by a word character, ":", "/", "."
# or ">" (so URLs, relative keys and "<folder>/key" stay), then at least two segments.
_ABS_PATH_RE = re.compile(r"(?<![\w:/.>])/(?:[^\s/'\"]+/)+[^\s/'\",)]*")


def public_text(text: str, folders: Iterable[Path]) -> str:
    """``text`` with every server path removed: the known ``folders`` become ``<folder>``,
    anything else that looks like an absolute path becomes ``<path>``."""
    known = {str(p) for f in folders for p in (f, f.resolve()) if p.is_absolute()}
    for folder in sorted(known - {"/"}, key=len, reverse=True):  # longest first: nested folders
        text = text.replace(folder, "<folder>")
    return _ABS_PATH_RE.sub("<path>", text)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the last write probes found: ``None`` for a check that passed, else why it failed."""

    storage_error: str | None
    spool_error: str | None


class HealthProbe:
    """Runs the write probes of storage and spool, at most once per ``ttl`` seconds per app."""

    def __init__(self, ttl: float = PROBE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._last: tuple[float, Spool, ProbeResult] | None = None

    def check(self, store: ObjectStore, spool: Spool) -> ProbeResult:
        with self._lock:  # concurrent requests wait for one probe instead of each running one
            if self._last is not None:
                at, probed_spool, result = self._last
                # A restarted app has a new spool: its first answer must be its own.
                if probed_spool is spool and time.monotonic() - at < self.ttl:
                    return result
            result = ProbeResult(_probe_store_write(store), _probe_spool(spool))
            self._last = (time.monotonic(), spool, result)
            return result


def _read_nightly(store: ObjectStore) -> tuple[str | None, str | None]:
    """(when the nightly last finished, or why that could not be read). A read is cheap and
    writes nothing, so it runs on every request: a new nightly shows at once."""
    key = latest_key(NIGHTLY_STATUS)
    try:
        return parse_summary(NightlyStatus, store.get(key), key).finished_at.isoformat(), None
    except KeyError:
        return None, None  # no nightly run yet: healthy, just empty
    except Exception as exc:  # unreachable, or nightly.json unreadable
        return None, f"{_error(exc)} (reading {key})"


def _probe_store_write(store: ObjectStore) -> str | None:
    probe = health_probe_key()
    try:
        store.put(probe, _PROBE_BYTES)
        store.delete(probe)
    except Exception as exc:
        return f"{_error(exc)} (writing a probe object)"
    return None


def _probe_spool(spool: Spool) -> str | None:
    try:
        spool.probe()
    except Exception as exc:
        return str(exc)
    if spool.last_write_error is not None:
        # The probe's few kB fit, but the last real submission did not (a big batch on a nearly
        # full disk): still an outage for submitters, until a write succeeds again.
        return f"the last write failed: {spool.last_write_error}"
    return None


@router.get(
    "/api/health", response_model=HealthResponse,
    responses={503: {"model": HealthResponse,
                     "description": "Degraded: storage or the spool cannot write, or the last "
                                    "flush failed (see `problems`)."}},
)
def health(
    request: Request, store: StoreDep, spool: SpoolDep, flusher: FlusherDep
) -> JSONResponse:
    """Whether the service can take and keep data now; 503 when it cannot."""
    probe: HealthProbe = request.app.state.health_probe
    settings = request.app.state.settings
    last_nightly, read_error = _read_nightly(store)
    found = probe.check(store, spool)
    folders = [settings.data_dir, spool.directory]
    try:
        root = store.local_path("x")
    except Exception:
        root = None
    if root is not None:
        folders.append(root.parent)

    problems = []
    storage = spool_state = "ok"
    storage_error = read_error or found.storage_error
    if storage_error is not None:
        storage = "error: " + public_text(storage_error, folders)
        problems.append(f"storage {storage}")
    if found.spool_error is not None:
        spool_state = "error: " + public_text(found.spool_error, folders)
        problems.append(f"spool {spool_state}")
    flush_error = flusher.last_error
    if flush_error is not None:
        flush_error = public_text(flush_error, folders)
        problems.append(f"last flush failed: {flush_error}")
    try:
        pending: int | None = spool.pending_count()
    except Exception:
        pending = None  # the spool probe above already says why

    body = HealthResponse(
        status="degraded" if problems else "ok", version=__version__, store=public_name(store),
        storage=storage, spool=spool_state, last_nightly=last_nightly,
        pending_submissions=pending, flush_error=flush_error, problems=problems,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if problems else 200)
