"""Benchmark: reading one day of small raw files before and after compaction (local store).

The seed wrote one Parquet file per submission; reading such a day is dominated by per-file cost
(open, footer, decode). This writes a day of single-row files through the real writer, times
``read_day`` (the exactly-once reader), compacts the day, and times the same read again.

    .venv/bin/python tests/bench/bench_compaction.py [--files 10000] [--users 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# Run as a script, Python puts tests/bench first on the path and `tasks` would resolve to the
# installed package (an editable install elsewhere); measure this checkout's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.compaction import compact_day
from tasks.records.io import write_records
from tasks.records.live import live_keys, read_day
from tasks.records.schema import make_record
from tasks.storage import LocalStore
from tasks.storage.layout import day_prefix

DAY = date(2026, 11, 1)


def _users(n: int) -> list[str]:
    # The scheduler plus community users (16-hex ids), as on a real day.
    return [USER_SCHEDULER] + [f"{i:016x}" for i in range(1, n)]


def populate(store: LocalStore, files: int, users: int) -> None:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    step = timedelta(seconds=86_399) / files
    for i, user in zip(range(files), _users(users) * (files // users + 1), strict=False):
        source = SOURCE_SCHEDULED if user == USER_SCHEDULER else SOURCE_COMMUNITY
        rec = make_record(
            timestamp=start + step * i, user_id=user, source=source,
            model_id=f"fake/model-{i % 4}", prompt_id=f"case-{i % 50:03d}",
            output=f"The answer to case {i % 50} is {i % 7}.", run_id=f"run-{i // 100}",
            suite="smoke", suite_version="1.0.0", sample_idx=0, temperature=0.0,
            passed=i % 3 != 0, score=float(i % 3 != 0), assertion_type="contains",
            latency_ms=300.0 + i % 200, input_tokens=20, output_tokens=8, cost_usd=0.0,
        )
        write_records(store, [rec], user_id=user, source=source)


class FileByFile(LocalStore):
    """The same folder without in-place paths: every file is fetched and decoded on its own."""

    def local_path(self, key: str) -> Path | None:
        return None


def timed_read(store: LocalStore, repeats: int) -> tuple[float, int]:
    best = float("inf")
    rows = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = read_day(store, DAY).num_rows
        best = min(best, time.perf_counter() - t0)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2, help="reads per phase; best is kept")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress when piped

    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        store = LocalStore(Path(tmp))
        t0 = time.perf_counter()
        populate(store, args.files, args.users)
        files = len(live_keys(store, day_prefix(DAY)))
        print(f"code under test: {Path(sys.modules['tasks'].__file__ or '').parent}")
        print(f"wrote {files} single-row files for {DAY} across {args.users} user partitions "
              f"in {time.perf_counter() - t0:.1f}s")

        before_s, before_rows = timed_read(store, args.repeats)
        print(f"read before compaction: {before_rows} rows in {before_s:.3f}s "
              f"(best of {args.repeats})")
        by_file_s, _ = timed_read(FileByFile(store.root), 1)
        print(f"  (file by file, as a store without local paths such as B2 reads, before "
              f"network time: {by_file_s:.2f}s)")

        t0 = time.perf_counter()
        result = compact_day(store, DAY)
        print(f"compaction: {result.files_in} files -> {result.partitions} files, "
              f"{result.rows} rows in {time.perf_counter() - t0:.2f}s")

        after_s, after_rows = timed_read(store, args.repeats)
        print(f"read after compaction:  {after_rows} rows in {after_s:.4f}s "
              f"(best of {args.repeats})")
        if after_rows != before_rows or result.rows != before_rows:
            raise SystemExit(f"row count changed: {before_rows} -> {after_rows}")
        ratio = before_s / after_s
        print(f"RESULT files={files} before_s={before_s:.3f} after_s={after_s:.4f} "
              f"ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
