"""Shared by the ``plumbline submit`` tests: many results as a run writes them, the real API
in-process with faults in front of it (the network edge), and what a store or spool holds."""

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
from tasks.records.io import parquet_to_table
from tasks.records.schema import to_table
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.support.faults import Crash
from tests.support.helpers import record

SECRET = "test-nextauth-secret-0123456789abcdef"
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
