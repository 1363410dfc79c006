"""Shared by the ``plumbline submit`` tests: results as a run writes them (a few in a store, or
many), the real API in-process with faults in front of it (the network edge), and what a store or
spool holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from api import create_app
from tasks.catalog import load_suite
from tasks.identity import USER_SCHEDULER
from tasks.records.io import parquet_to_table, write_records
from tasks.records.schema import to_table
from tasks.run.plan import resolve_config
from tasks.run.state import mark_day, open_run
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.support.faults import Crash
from tests.support.helpers import record

SECRET = "test-nextauth-secret-0123456789abcdef"
RUN_ID = "smoke-20261101T060000Z-abc123"
MODELS = ("fake/stable", "fake/drifting")
# When the results were produced: a run pinned with as_of gives all its rows one timestamp.
WHEN = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)

# (status, headers, body) an ASGI stand-in sends instead of the app, or None to pass through.
Reply = tuple[int, dict[str, str], bytes] | None


def many_records(n: int, *, samples: int = 10, run_id: str = "bulk-run") -> list[dict[str, Any]]:
    """``n`` results of one run: models × prompts × samples, every sample of a prompt with the
    same output (the API must still store each sample once, not one per prompt)."""
    rows = []
    for i in range(n):
        cell, sample = divmod(i, samples)
        model = MODELS[cell % len(MODELS)]
        prompt = f"p{cell // len(MODELS):04d}"
        rows.append(record(model_id=model, prompt_id=prompt, output=f"answer to {prompt}",
                           sample_idx=sample, run_id=run_id, timestamp=WHEN))
    return rows


def write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    pq.write_table(to_table(list(rows)), path)
    return path


def identity(row: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a stored row the result it is."""
    return (row["model_id"], row["prompt_id"], row["run_id"], row["sample_idx"])


def stored_rows(data_dir: Path) -> list[dict[str, Any]]:
    """Every row in the raw Parquet files of a local store."""
    store = LocalStore(data_dir)
    rows: list[dict[str, Any]] = []
    for info in store.list("raw/"):
        rows.extend(parquet_to_table(store.get(info.key)).to_pylist())
    return rows


def times_stored(rows: Sequence[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(identity(r) for r in rows)


class Faults:
    """ASGI in front of the real app: ``answer(path, n)`` may reply to the n-th request itself,
    as a proxy, a rate limiter or an older API would; everything else reaches the app.

    With ``crash_after=n`` the client dies (``Crash``) right after the app answered its n-th
    request: the server stored it, the client never saw the answer.
    """

    def __init__(self, app: Any, answer: Callable[[str, int], Reply],
                 crash_after: int | None = None) -> None:
        self.app = app
        self.answer = answer
        self.crash_after = crash_after
        self.calls = 0
        self.paths: list[str] = []
        self.statuses: list[int] = []  # of every answer, the app's or ours

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.calls += 1
        self.paths.append(scope["path"])

        async def noting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(message["status"])
            await send(message)

        reply = self.answer(scope["path"], self.calls)
        if reply is not None:
            status, headers, body = reply
            await noting({"type": "http.response.start", "status": status,
                          "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, noting)
        if self.calls == self.crash_after:
            raise Crash(f"the client died after request {self.calls} was answered")


def passes(path: str, n: int) -> Reply:
    return None


@dataclass
class InProcessApi:
    """The real app behind ``Faults``, and a client to it."""

    client: TestClient
    front: Faults
    app: Any

    def pending(self) -> list[dict[str, Any]]:
        """What the API accepted (its spool; nothing is flushed during these tests)."""
        return list(self.app.state.spool.pending_records())


@contextmanager
def real_api(tmp_path: Path, answer: Callable[[str, int], Reply] = passes, *,
             crash_after: int | None = None,
             **settings: Any) -> Iterator[InProcessApi]:
    """The real app (spool, limits, validation) in-process behind ``Faults``."""
    base = dict(data_dir=tmp_path / "api-data", spool_dir=tmp_path / "api-spool",
                nextauth_secret=SECRET, rate_limit_per_minute=10_000,
                spool_flush_seconds=3600)
    app = create_app(Settings(**{**base, **settings}), LocalStore(tmp_path / "api-data"))
    front = Faults(app, answer, crash_after)
    with TestClient(front) as client:
        yield InProcessApi(client, front, app)


def store_run(store: LocalStore, rows: list[dict[str, Any]]) -> None:
    """Rows as the runner leaves them: each run opened (its manifest), a day marker, the rows."""
    suite = load_suite("smoke")
    for run_id in sorted({r["run_id"] for r in rows}):
        mine = [r for r in rows if r["run_id"] == run_id]
        open_run(store, suite, resolve_config(suite, run_id=run_id, source="scheduled"))
        for day in {r["timestamp"].date() for r in mine}:
            mark_day(store, run_id, day)
        write_records(store, mine, user_id=USER_SCHEDULER, source="scheduled")


def sample_rows() -> list[dict[str, Any]]:
    """Four rows of one run: two results, a second sample of the first, a failed call."""
    return [
        record(prompt_id="c1", output="6", run_id=RUN_ID),
        record(prompt_id="c2", output="Paris", passed=False, score=0.0, run_id=RUN_ID),
        # The same model, prompt and output again, as another sample: a result of its own.
        record(prompt_id="c1", output="6", sample_idx=1, run_id=RUN_ID),
        # A failed call: no output to compare, so nothing to submit.
        record(prompt_id="c3", output=None, error="TimeoutError: 30 s", passed=None,
               score=None, run_id=RUN_ID),
    ]
