"""A run's state in the store, so that it can be resumed and found again.

A run's rows are found through ``state/runs/<run_id>/`` (its parameters, and one marker per day
partition it wrote to), so re-running a run id calls only the (model, case, sample) cells that
have no successful row yet, and ``plumbline submit <run_id>`` reads only the days it wrote to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from tasks.errors import ConfigError, StorageError
from tasks.run.plan import Cell, RunConfig
from tasks.storage.base import ObjectStore
from tasks.storage.layout import (
    run_day_marker_key,
    run_days_prefix,
    run_manifest_key,
    user_day_prefix,
)
from tasks.suites.model import Suite

if TYPE_CHECKING:  # pyarrow loads when there are rows to read: a new run starts without it
    import pyarrow as pa

# What must match for a resumed run's rows to be comparable with the rows it already has.
_PINNED = ("suite", "suite_hash", "temperature", "seed", "max_tokens", "system_prompt",
           "source", "user_id")


def _manifest(suite: Suite, config: RunConfig) -> dict[str, Any]:
    return {
        "run_id": config.run_id,
        "suite": suite.name,
        "suite_version": suite.version,
        "suite_hash": suite.hash,
        "temperature": config.temperature,
        "seed": config.seed,
        "max_tokens": config.max_tokens,
        "system_prompt": config.system_prompt,
        "source": config.source,
        "user_id": config.user_id,
        "as_of": config.as_of.isoformat() if config.as_of else None,
        "created": datetime.now(UTC).isoformat(),
    }


def read_manifest(store: ObjectStore, run_id: str) -> dict[str, Any] | None:
    """The parameters ``run_id`` started with, or None if it never started in this store."""
    key = run_manifest_key(run_id)
    try:
        data = store.get(key)
    except KeyError:
        return None
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise StorageError(f"unreadable run manifest: {exc}", key=key) from exc
    if not isinstance(manifest, dict):
        raise StorageError("unreadable run manifest: not a JSON object", key=key)
    return manifest


@dataclass
class RunState:
    """What a run already has in storage when it (re)starts."""

    run_id: str
    resumed: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def completed(self) -> set[Cell]:
        return {(r["model_id"], r["prompt_id"], r["sample_idx"]) for r in self.rows
                if r["error"] is None}


def open_run(store: ObjectStore, suite: Suite, config: RunConfig) -> RunState:
    """Start or resume ``config.run_id``: record its parameters, or check them and load its rows.

    Raises ``ConfigError`` when a resume asks for different parameters than the run started
    with: mixing them would make the run's rows incomparable.
    """
    wanted = _manifest(suite, config)
    started = read_manifest(store, config.run_id)
    if started is None:
        store.put(run_manifest_key(config.run_id), json.dumps(wanted, indent=1).encode())
    else:
        diffs = [f"{k}={started.get(k)!r} (now {wanted[k]!r})" for k in _PINNED
                 if started.get(k) != wanted[k]]
        if diffs:
            raise ConfigError(
                f"run {config.run_id!r} was started with " + ", ".join(diffs)
                + "; resume it with the same parameters, or start a new run id"
            )
    return RunState(config.run_id, resumed=started is not None, rows=load_rows(store, config))


def load_rows(store: ObjectStore, config: RunConfig) -> list[dict[str, Any]]:
    """Every stored row of ``config.run_id`` (all its attempts), e.g. after its parts ended."""
    days = run_days(store, config.run_id)
    if config.as_of is not None:
        days.add(config.as_of.astimezone(UTC).date())
    if not days:
        return []
    return read_run_rows(store, config.run_id, config.user_id, days).to_pylist()


def mark_day(store: ObjectStore, run_id: str, day: date) -> None:
    """Say that ``run_id`` has rows in ``day``'s partition; written before the rows are."""
    store.put(run_day_marker_key(run_id, day), b"")


def run_days(store: ObjectStore, run_id: str) -> set[date]:
    """The days whose partitions hold rows of ``run_id`` (from its day markers)."""
    prefix = run_days_prefix(run_id)
    days = set()
    for info in store.list(prefix):
        try:
            days.add(date.fromisoformat(info.key[len(prefix):]))
        except ValueError:
            continue
    return days


def read_run_rows(store: ObjectStore, run_id: str, user_id: str,
                  days: Iterable[date]) -> pa.Table:
    """Every row of ``run_id`` in the given days' ``user=`` partitions, compacted or not.

    Each day is read with ``read_live``, so a day caught halfway through compaction is neither
    read twice nor missed.
    """
    import pyarrow as pa

    from tasks.records.live import read_live
    from tasks.records.schema import record_schema

    tables = [read_live(store, user_day_prefix(day, user_id), run_id=run_id)
              for day in sorted(set(days))]
    if not tables:
        return record_schema().empty_table()
    return pa.concat_tables(tables)


def final_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: its successful row if it has one, else its latest error row.

    A resumed run keeps the error rows of earlier attempts in storage (they happened); the
    run's result counts each cell once.
    """
    best: dict[Cell, dict[str, Any]] = {}
    for rec in records:
        cell = (rec["model_id"], rec["prompt_id"], rec["sample_idx"])
        old = best.get(cell)
        if old is None or _better(rec, old):
            best[cell] = rec
    return list(best.values())


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    if (new["error"] is None) != (old["error"] is None):
        return new["error"] is None
    if new["error"] is None:
        return False  # two successes (should not happen): keep the first one seen
    return bool(new["timestamp"] >= old["timestamp"])
