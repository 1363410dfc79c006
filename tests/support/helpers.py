"""Factories for test data: records and small suites, built through the real schema code."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.io import write_records
from tasks.records.schema import make_record
from tasks.storage.base import ObjectInfo, ObjectStore


def record(**overrides: Any) -> dict[str, Any]:
    """A valid record with sensible defaults; any field can be overridden."""
    fields: dict[str, Any] = {
        "timestamp": datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
        "user_id": USER_SCHEDULER,
        "model_id": "fake/stable",
        "prompt_id": "case-1",
        "output": "The answer is 6.",
        "run_id": "run-1",
        "source": SOURCE_SCHEDULED,
        "suite": "smoke",
        "suite_version": "1.0.0",
        "suite_hash": "sha256:" + "0" * 64,
        "sample_idx": 0,
        "temperature": 0.0,
        "seed": 42,
        "passed": True,
        "score": 1.0,
        "assertion_type": "contains",
        "latency_ms": 420.0,
        "input_tokens": 12,
        "output_tokens": 4,
        "cost_usd": 0.0,
    }
    fields.update(overrides)
    return make_record(**fields)


def community_record(day: date, user_id: str, i: int, **overrides: Any) -> dict[str, Any]:
    """The ``i``-th community submission of ``user_id`` on ``day``, as the submit API stores it
    (run id "community", sample 0; a second apart, over 8 prompts)."""
    fields: dict[str, Any] = {
        "timestamp": datetime.combine(day, time(12, 0), tzinfo=UTC) + timedelta(seconds=i),
        "user_id": user_id, "source": SOURCE_COMMUNITY, "run_id": "community",
        "sample_idx": 0, "prompt_id": f"case-{i % 8}",
    }
    return record(**{**fields, **overrides})


def write_community(store: ObjectStore, day: date, user_id: str, n: int,
                    **overrides: Any) -> None:
    """``n`` community submissions of ``user_id`` on ``day`` (one raw file)."""
    rows = [community_record(day, user_id, i, **overrides) for i in range(n)]
    write_records(store, rows, user_id=user_id, source=SOURCE_COMMUNITY)


def write_suite(folder: Path, cases: list[dict[str, Any]] | list[str], **meta: Any) -> Path:
    """A suite folder with ``suite.toml`` and ``cases.jsonl`` (cases as dicts or raw lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    toml = {"name": folder.name, "version": "1.0.0", "description": "test suite", **meta}
    lines = [f"{k} = {json.dumps(v)}" for k, v in toml.items() if not isinstance(v, dict)]
    for k, v in toml.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines.extend(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
    (folder / "suite.toml").write_text("\n".join(lines) + "\n")
    body = [c if isinstance(c, str) else json.dumps(c) for c in cases]
    (folder / "cases.jsonl").write_text("\n".join(body) + "\n")
    return folder


class DelegatingStore:
    """An ``ObjectStore`` that forwards everything to ``inner``: tests subclass it and override
    only the operation they fault or observe (an outage, a counter, no local paths)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def describe(self) -> str:
        return self.inner.describe()

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def models_json(**model: Any) -> bytes:
    """A valid ``models.json`` with one model (``fake/stable``); any model field can be
    overridden."""
    window = {"as_of": "2026-11-30", "recent_days": 7, "baseline_days": 28,
              "recent_start": "2026-11-24", "baseline_start": "2026-10-27",
              "baseline_end": "2026-11-23"}
    fields = {"model_id": "fake/stable", "last_seen": "2026-11-30", "rows_recent": 168,
              "rows_baseline": 672, "pass_rate_recent": 0.95, "pass_rate_baseline": 0.96,
              "consistency": 1.0, "consistency_band": "stable", "verdict": "stable",
              "reasons": [], "significant_tests": 0, "suites": ["smoke"]}
    return json.dumps({"generated_at": "2026-11-30T02:00:00+00:00", "window": window,
                       "models": [{**fields, **model}]}).encode()
