"""The run engine: (model × cases × samples) → provider calls → scores → records in storage.

Plain functions, testable without Prefect; ``flows/run_suite.py`` maps them over
(model × shard of cases), never one Prefect task per LLM call. Inside a shard the calls run
concurrently on one event loop, one shared HTTP client per provider.

Runs are resumable: a run's rows are found again through ``state/runs/<run_id>/`` (its
parameters, and one marker per day partition it wrote to), so re-running a run id calls only
the (model, case, sample) cells that have no successful row yet. Rows are written while the
shard works, so a killed run loses at most the last few seconds of answers.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import ConfigError, StorageError
from tasks.providers.base import Completion, CompletionRequest, split_model_id
from tasks.providers.pricing import load_pricing
from tasks.providers.registry import ProviderRegistry
from tasks.records.io import write_records
from tasks.records.live import live_keys
from tasks.records.schema import (
    RECORD_SCHEMA,
    SOURCE_ON_DEMAND,
    USER_SCHEDULER,
    conform,
    make_record,
)
from tasks.retry import RetryPolicy
from tasks.run.cache import ResponseCache
from tasks.scorers import ScoreContext, score
from tasks.storage.base import ObjectStore
from tasks.storage.layout import STATE, user_day_prefix
from tasks.suites.model import Case, Suite

DEFAULT_CONCURRENCY = 16
# A shard writes its rows in batches: whichever comes first. Small enough that a kill loses
# little, large enough that a day's raw partition is not thousands of tiny files (the nightly
# compaction merges them anyway).
FLUSH_ROWS = 250
FLUSH_SECONDS = 15.0

# A run id becomes an object key segment: nothing that could leave its folder.
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}$")

T = TypeVar("T")

Cell = tuple[str, str, int]
"""(model_id, prompt_id, sample_idx): the unit a run must complete exactly once."""


@dataclass(frozen=True)
class RunConfig:
    """Resolved parameters of one run (the suite's defaults already applied)."""

    run_id: str
    samples: int
    temperature: float
    max_tokens: int
    seed: int | None
    system_prompt: str | None = None
    source: str = SOURCE_ON_DEMAND
    user_id: str = USER_SCHEDULER
    as_of: datetime | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    use_cache: bool = False


def new_run_id(suite: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", suite).strip("-.") or "run"
    return f"{name}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError(
            f"invalid run_id {run_id!r}: use letters, digits and . _ : @ + - "
            "(up to 160 characters, starting with a letter or digit)"
        )
    return run_id


def resolve_config(suite: Suite, **overrides: Any) -> RunConfig:
    """Run parameters: explicit values win, then the suite's defaults."""
    d = suite.defaults
    pick = {k: v for k, v in overrides.items() if v is not None}
    run_id = pick.pop("run_id", None) or new_run_id(suite.name, pick.get("as_of"))
    return RunConfig(
        run_id=check_run_id(run_id),
        samples=pick.pop("samples", d.samples),
        temperature=pick.pop("temperature", d.temperature),
        max_tokens=pick.pop("max_tokens", d.max_tokens),
        seed=pick.pop("seed", d.seed),
        system_prompt=pick.pop("system_prompt", d.system_prompt),
        **pick,
    )


def shard_cases(cases: Sequence[Case], shard_size: int) -> list[list[Case]]:
    return [list(cases[i:i + shard_size]) for i in range(0, len(cases), shard_size)]


@dataclass(frozen=True)
class ShardPlan:
    """One (model × shard) with the cells it still has to call."""

    model_id: str
    index: int
    cases: list[Case]
    skip: frozenset[tuple[str, int]]
    todo: int


def plan_shards(
    cases: Sequence[Case], model_ids: Sequence[str], config: RunConfig, shard_size: int,
    completed: Collection[Cell] = frozenset(),
) -> list[ShardPlan]:
    """The shards that still have work, each knowing which of its cells are already done."""
    plan = []
    for model_id in model_ids:
        for i, shard in enumerate(shard_cases(cases, shard_size)):
            cells = [(c.id, s) for c in shard for s in range(config.samples)]
            skip = frozenset(c for c in cells if (model_id, *c) in completed)
            if len(skip) < len(cells):
                plan.append(ShardPlan(model_id, i, shard, skip, len(cells) - len(skip)))
    return plan


def provider_options(
    model_ids: Iterable[str],
    *,
    limits: dict[str, dict[str, float]] | None = None,
    timeout: float | None = None,
    max_attempts: int | None = None,
    pricing_file: Path | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Factory options for the real-API providers the models use, from settings and overrides.

    ``rpm``/``tpm`` (one run's override) apply to every provider of the run. The offline
    ``fake`` provider takes none of these.
    """
    options: dict[str, dict[str, Any]] = {}
    pricing = load_pricing(pricing_file)
    for prefix in sorted({split_model_id(m)[0] for m in model_ids} - {"fake"}):
        lim = dict((limits or {}).get(prefix, {}))
        if rpm is not None:
            lim["rpm"] = rpm
        if tpm is not None:
            lim["tpm"] = tpm
        opts: dict[str, Any] = {"limits": lim, "pricing": pricing}
        if timeout is not None:
            opts["timeout"] = timeout
        if max_attempts is not None:
            opts["retry"] = RetryPolicy(max_attempts=max_attempts)
        options[prefix] = opts
    return options


# --- progress ---------------------------------------------------------------------------------

ProgressListener = Callable[[str, int, int], None]


class RunProgress:
    """Cells done per run in this process, for the flow's progress artifact and the CLI bar.

    Shard tasks run in threads of the flow's process (Prefect's default task runner), so one
    process-wide board sees them all; listeners get ``(run_id, done, total)``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, list[int]] = {}
        self._listeners: list[ProgressListener] = []

    def start(self, run_id: str, total: int) -> None:
        with self._lock:
            self._runs[run_id] = [0, total]
        self._notify(run_id, 0, total)

    def advance(self, run_id: str, n: int = 1) -> None:
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                return
            state[0] += n
            done, total = state
        self._notify(run_id, done, total)

    def forget(self, run_id: str) -> None:
        """Drop a finished run (a long-lived worker runs many)."""
        with self._lock:
            self._runs.pop(run_id, None)

    def get(self, run_id: str) -> tuple[int, int]:
        with self._lock:
            done, total = self._runs.get(run_id, (0, 0))
            return done, total

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, run_id: str, done: int, total: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(run_id, done, total)


PROGRESS = RunProgress()


class TerminalProgress:
    """A progress bar per run on stderr (``plumbline run``), fed by ``PROGRESS``.

    Used as a context manager around the flow call; shards report from their threads and rich
    redraws at its own pace, so a cell costs one counter update, not a redraw.
    """

    def __init__(self, board: RunProgress = PROGRESS) -> None:
        self.board = board
        self._bars: dict[str, Any] = {}
        self._progress: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> TerminalProgress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("calls"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._unsubscribe = self.board.subscribe(self._update)
        return self

    def _update(self, run_id: str, done: int, total: int) -> None:
        bar = self._bars.get(run_id)
        if bar is None:
            bar = self._bars[run_id] = self._progress.add_task(f"run {run_id}", total=total)
        self._progress.update(bar, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._progress.stop()


# --- the calls --------------------------------------------------------------------------------

_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def _gc_tuned_for_run() -> Iterator[None]:
    """Fewer, cheaper garbage collections while a run's calls are in flight.

    Each call allocates thousands of short-lived objects (SDK models, headers, records); with the
    default thresholds the collector runs constantly and its full passes walk every object that
    Prefect, pydantic and the SDKs keep alive, stalling the event loop while answers wait. The
    long-lived heap is frozen out of collection and the young-generation threshold raised while
    any run is active (shards run concurrently in threads, and these settings are process-wide,
    hence the count), then both are restored. Measured in docs/benchmarks.md.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_gc_saved[0], 50_000), _gc_saved[1], _gc_saved[2])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


async def run_cells(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    registry: ProviderRegistry,
    on_done: Callable[[int], None] | None = None,
    *,
    skip: Collection[tuple[str, int]] = (),
    cache: ResponseCache | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Call ``model_id`` on every (case, sample) not in ``skip``; one scored record per cell.

    At most ``config.concurrency`` calls are in flight. A call that fails, even by raising, is
    a record with ``error`` set: no cell is ever lost.
    """
    provider, model = registry.for_model(model_id)
    # A judge scorer reuses the run's providers: one client and one set of limits per provider.
    ctx = ScoreContext(model_id=model_id, extras={"registry": registry})
    # Computed once: the hash covers every case, and a shard builds thousands of records.
    suite_hash = suite.hash
    skipped = set(skip)
    todo = [(c, s) for c in cases for s in range(config.samples) if (c.id, s) not in skipped]
    records: list[dict[str, Any]] = []

    # `concurrency` bounds the requests in flight, not the cells being worked on: scoring and
    # record building happen outside this bound, so a slot is never idle while its last answer
    # is being scored.
    in_flight = asyncio.Semaphore(config.concurrency)

    async def call(request: CompletionRequest) -> Completion:
        if cache is not None:
            hit = await cache.get(model_id, request)
            if hit is not None:
                return hit
        started = time.perf_counter()
        try:
            async with in_flight:
                completion = await provider.complete(model, request)
        except Exception as exc:  # a provider bug is still a row, not a lost cell
            completion = Completion(
                None, error=f"{type(exc).__name__}: {exc}",
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        if cache is not None:
            await cache.put(model_id, request, completion)
        return completion

    async def cell(case: Case, sample_idx: int) -> None:
        request = CompletionRequest(
            messages=case.messages(config.system_prompt),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.seed,
            sample_idx=sample_idx,
            prompt_id=case.id,
            reference=case.ideals[0] if case.ideals else None,
            as_of=config.as_of,
        )
        completion = await call(request)
        result = await score(completion.text, case, ctx) if completion.ok else None
        record = build_record(suite, model_id, case, sample_idx, config, completion, result,
                              suite_hash=suite_hash)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if on_done is not None:
            on_done(1)

    # A fixed pool of workers rather than one task per cell: a 100k-cell shard stays cheap.
    queue = iter(todo)

    async def worker() -> None:
        for case, sample_idx in queue:
            await cell(case, sample_idx)

    # A few more workers than request slots keep every slot busy while others post-process.
    workers = min(config.concurrency + max(2, config.concurrency // 4), len(todo))
    with _gc_tuned_for_run():
        await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    return records


def build_record(
    suite: Suite,
    model_id: str,
    case: Case,
    sample_idx: int,
    config: RunConfig,
    completion: Completion,
    result: Any,
    *,
    suite_hash: str | None = None,
) -> dict[str, Any]:
    ts = config.as_of or datetime.now(UTC)
    meta: dict[str, Any] = {"difficulty": case.metadata.get("difficulty"),
                            "tags": case.metadata.get("tags")}
    if completion.cached:
        meta["cached"] = True
    if completion.attempts > 1:
        meta["attempts"] = completion.attempts
    return make_record(
        timestamp=ts,
        user_id=config.user_id,
        model_id=model_id,
        prompt_id=case.id,
        output=completion.text,
        metadata_json=json.dumps(meta, separators=(",", ":")),
        run_id=config.run_id,
        source=config.source,
        suite=suite.name,
        suite_version=suite.version,
        suite_hash=suite_hash or suite.hash,
        category=case.category,
        sample_idx=sample_idx,
        temperature=config.temperature,
        seed=config.seed,
        passed=None if result is None else result.passed,
        score=None if result is None else result.score,
        assertion_type=case.assertion_type,
        score_reason=None if result is None else result.reason,
        finish_reason=completion.finish_reason,
        latency_ms=completion.latency_ms,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=completion.cost_usd,
        error=completion.error,
    )


# --- run state in the store -------------------------------------------------------------------

def _run_prefix(run_id: str) -> str:
    return f"{STATE}/runs/{check_run_id(run_id)}/"


def manifest_key(run_id: str) -> str:
    return f"{_run_prefix(run_id)}manifest.json"


def day_marker_key(run_id: str, day: date) -> str:
    """An empty object saying "this run has rows in this day's partition"."""
    return f"{_run_prefix(run_id)}days/{day.isoformat()}"


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
    key = manifest_key(config.run_id)
    wanted = _manifest(suite, config)
    try:
        started = json.loads(store.get(key))
    except KeyError:
        store.put(key, json.dumps(wanted, indent=1).encode())
        started = None
    if started is not None:
        diffs = [f"{k}={started.get(k)!r} (now {wanted[k]!r})" for k in _PINNED
                 if started.get(k) != wanted[k]]
        if diffs:
            raise ConfigError(
                f"run {config.run_id!r} was started with " + ", ".join(diffs)
                + "; resume it with the same parameters, or start a new run id"
            )
    days = run_days(store, config.run_id)
    if config.as_of is not None:
        days.add(config.as_of.astimezone(UTC).date())
    table = read_run_rows(store, config.run_id, config.user_id, days)
    return RunState(config.run_id, resumed=started is not None, rows=table.to_pylist())


def run_days(store: ObjectStore, run_id: str) -> set[date]:
    prefix = f"{_run_prefix(run_id)}days/"
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

    Files a compacted file already covers are skipped (``live_keys``), so a day caught halfway
    through compaction is not read twice; a file compacted away between listing and reading
    makes the day be listed again, so its rows are not missed either.
    """
    tables = []
    for day in sorted(set(days)):
        prefix = user_day_prefix(day, user_id)
        for _ in range(5):
            found, vanished = [], False
            for key in live_keys(store, prefix):
                try:
                    data = store.get(key)
                except KeyError:
                    vanished = True
                    break
                part = pq.read_table(io.BytesIO(data), filters=[("run_id", "==", run_id)])
                if part.num_rows:
                    found.append(conform(part))
            if not vanished:
                tables.extend(found)
                break
        else:
            raise StorageError("could not get a stable listing (files keep disappearing "
                               "while being read); is a compaction stuck in a loop?", key=prefix)
    if not tables:
        return RECORD_SCHEMA.empty_table()
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


class RecordSink:
    """Writes a shard's records to storage in batches while the shard runs.

    Before rows land in a day partition the run's marker for that day is written, so a resume
    always knows where to look. Writes run in a thread (storage is blocking I/O) one at a time;
    a failed batch is retried on close, and if it fails again the error is raised (its cells
    have no row and a resume will do them again).
    """

    def __init__(self, store: ObjectStore, config: RunConfig, *, flush_rows: int = FLUSH_ROWS,
                 flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.config = config
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.written = 0
        self._buffer: list[dict[str, Any]] = []
        self._failed: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._marked: set[date] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def add(self, record: dict[str, Any]) -> None:
        self._buffer.append(record)
        if (len(self._buffer) >= self.flush_rows
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            batch, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self._write_sync, batch)
            except Exception:
                self._failed.extend(batch)

    def _write_sync(self, batch: list[dict[str, Any]]) -> None:
        for day in {r["timestamp"].date() for r in batch} - self._marked:
            self.store.put(day_marker_key(self.config.run_id, day), b"")
            self._marked.add(day)
        write_records(self.store, batch, user_id=self.config.user_id, source=self.config.source)
        self.written += len(batch)

    async def aclose(self) -> None:
        """Write everything still buffered (also when the shard is being cancelled)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        batch, self._buffer, self._failed = self._failed + self._buffer, [], []
        if batch:
            async with self._lock:
                await asyncio.to_thread(self._write_sync, batch)


def run_shard(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    store: ObjectStore,
    registry: ProviderRegistry | None = None,
    *,
    skip: Collection[tuple[str, int]] = (),
    provider_options: dict[str, dict[str, Any]] | None = None,
    flush_rows: int = FLUSH_ROWS,
    flush_seconds: float = FLUSH_SECONDS,
) -> list[dict[str, Any]]:
    """Run one (model × shard), writing rows as they come; return the new records.

    ``skip`` holds the (prompt_id, sample_idx) cells this model already completed.
    """

    async def go() -> list[dict[str, Any]]:
        reg = registry or ProviderRegistry(options=provider_options)
        sink = RecordSink(store, config, flush_rows=flush_rows, flush_seconds=flush_seconds)
        cache = ResponseCache(store) if config.use_cache else None
        try:
            return await run_cells(
                suite, model_id, cases, config, reg,
                on_done=lambda n: PROGRESS.advance(config.run_id, n),
                skip=skip, cache=cache, on_record=sink.add,
            )
        finally:
            try:
                await sink.aclose()
            finally:
                if registry is None:
                    await reg.aclose()

    return run_async(go())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a shard's event loop: uvloop when installed (it comes with uvicorn[standard]).

    uvloop cuts the CPU the loop and sockets take per call by about a fifth; with tens of
    calls in flight that CPU, not the network, is what bounds a shard's throughput.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --- the result -------------------------------------------------------------------------------

SUMMARY_COLUMNS = ("model_id", "cases", "rows", "pass_rate", "errors", "input_tokens",
                   "output_tokens", "cost_usd", "latency_p50_ms", "latency_p95_ms")


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: cases, rows, pass rate, errors, tokens, cost, p50/p95 latency."""
    if not records:
        return []
    df = pl.DataFrame(
        {k: [r[k] for r in records] for k in (
            "model_id", "prompt_id", "passed", "error", "input_tokens", "output_tokens",
            "cost_usd", "latency_ms")},
        schema_overrides={"cost_usd": pl.Float64, "latency_ms": pl.Float64,
                          "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                          "passed": pl.Boolean, "error": pl.String},
    )
    out = (
        df.group_by("model_id")
        .agg(
            cases=pl.col("prompt_id").n_unique(),
            rows=pl.len(),
            pass_rate=pl.col("passed").cast(pl.Float64).mean(),
            errors=pl.col("error").is_not_null().sum(),
            input_tokens=pl.col("input_tokens").sum(),
            output_tokens=pl.col("output_tokens").sum(),
            # Unknown prices stay unknown: a sum with any answered call's cost null is null, not
            # an undercount. Failed calls are not billed and do not make the total unknown.
            cost_usd=pl.when((pl.col("cost_usd").is_null() & pl.col("error").is_null()).any())
            .then(None).otherwise(pl.col("cost_usd").sum()),
            latency_p50_ms=pl.col("latency_ms").quantile(0.5, "linear"),
            latency_p95_ms=pl.col("latency_ms").quantile(0.95, "linear"),
        )
        .sort("model_id")
    )
    return out.select(SUMMARY_COLUMNS).to_dicts()
