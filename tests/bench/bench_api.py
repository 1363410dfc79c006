"""Benchmark the API under real uvicorn: GET /api/data/chart (a materialized summary) against the
seed's way of serving the same chart (list and read the day's raw Parquet files per request), and
POST /api/submit (acknowledged only once durable in the fsync'd spool).

The server runs in its own process (this file with ``--serve``); the load comes from this process
through httpx with many concurrent keep-alive connections, bounded in request count and time.

    .venv/bin/python tests/bench/bench_api.py [--files 400] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

try:
    # pydantic's httpx2 (the "next generation" httpx, same API, already installed as a dependency
    # of the openai and anthropic SDKs) costs ~2.5x less client CPU per request; on a 2-core box
    # the load generator would otherwise be the bottleneck, not the server.
    import httpx2 as loadhttp
except ImportError:  # pragma: no cover
    loadhttp = httpx  # type: ignore[no-redef]
import polars as pl  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED  # noqa: E402
from tasks.records.io import table_to_parquet  # noqa: E402
from tasks.records.live import read_day  # noqa: E402
from tasks.records.schema import make_record, output_hash, to_table  # noqa: E402
from tasks.storage.layout import day_prefix, raw_key  # noqa: E402
from tasks.storage.local import LocalStore  # noqa: E402
from tasks.summaries.publish import chart_payload, dump_json, publish_chart  # noqa: E402

DAY = date(2026, 11, 20)
MODELS = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "fake/stable", "fake/drifting"]


# --- the server side ----------------------------------------------------------------------------

def seed_chart_bytes(store: LocalStore, day: date) -> bytes:
    """The seed's read path: list the day's raw files, read every one, count per model."""
    table = read_day(store, day)
    frame = pl.from_arrow(table.select(["model_id"]))
    assert isinstance(frame, pl.DataFrame)
    daily = (frame.group_by("model_id").agg(pl.len().alias("rows"))
             .with_columns(pl.lit(day).alias("date")))
    return dump_json(chart_payload(daily))


def serve(port: int) -> None:
    import uvicorn
    from fastapi.responses import Response

    from api import create_app
    from tasks.settings import Settings

    settings = Settings()
    store = LocalStore(settings.data_dir)
    app = create_app(settings, store)

    @app.get("/bench/seed-chart", include_in_schema=False)
    def seed_chart() -> Response:  # sync, like the seed's handler: it blocks on file reads
        return Response(seed_chart_bytes(store, DAY), media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the data -----------------------------------------------------------------------------------

def build_day(store: LocalStore, files: int) -> int:
    """A realistic day: the seed wrote one small file per community submission, plus a few
    scheduled runs of a few hundred rows. Returns the row count."""
    rows = 0
    base = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)
    for i in range(files):
        ts = base + timedelta(seconds=60 * i)
        model = MODELS[i % len(MODELS)]
        rec = make_record(timestamp=ts, user_id="anonymous", model_id=model, prompt_id=f"p{i % 50}",
                          output=f"answer {i} " * 20, run_id="community",
                          source=SOURCE_COMMUNITY, sample_idx=0, passed=i % 3 > 0, score=1.0)
        store.put(raw_key(ts, "anonymous", SOURCE_COMMUNITY), table_to_parquet(to_table([rec])))
        rows += 1
    for r in range(4):
        ts = base + timedelta(hours=6 + r)
        recs = [make_record(timestamp=ts, user_id="scheduler", model_id=MODELS[r],
                            prompt_id=f"p{j % 50}", output=f"scheduled {j} " * 20, run_id=f"s{r}",
                            source=SOURCE_SCHEDULED, sample_idx=j // 50) for j in range(250)]
        store.put(raw_key(ts, "scheduler", SOURCE_SCHEDULED), table_to_parquet(to_table(recs)))
        rows += len(recs)
    return rows


def publish(store: LocalStore) -> None:
    # What the nightly flow materializes: per day × model counts → chart.json.
    frame = pl.from_arrow(read_day(store, DAY).select(["model_id"]))
    assert isinstance(frame, pl.DataFrame)
    daily = (frame.group_by("model_id").agg(pl.len().alias("rows"))
             .with_columns(pl.lit(DAY).alias("date")))
    publish_chart(store, daily)


# --- the client side ----------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    def line(self) -> str:
        return (f"{self.name:<28} {self.ok:>7} ok {self.errors:>4} err {self.seconds:6.2f} s "
                f"{self.rps:8.1f} req/s  p50 {self.pct(0.5):6.2f} ms  p99 {self.pct(0.99):6.2f} ms")


async def load(url: str, name: str, *, concurrency: int, max_requests: int, seconds: float,
               method: str = "GET", body: Any = None, expect: bytes | None = None) -> Phase:
    limits = loadhttp.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    issued = 0
    async with loadhttp.AsyncClient(limits=limits, timeout=30) as client:
        # Warm the connections (and the server's caches) outside the measurement.
        await asyncio.gather(*(client.get(url.rsplit("/api/", 1)[0] + "/api/health")
                               for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                try:
                    if method == "GET":
                        r = await client.get(url)
                    else:
                        r = await client.post(url, content=body(),
                                              headers={"content-type": "application/json"})
                except loadhttp.HTTPError:
                    errors += 1
                    continue
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code == 200 and (expect is None or expect in r.content):
                    latencies.append(dt)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Phase(name, len(latencies), errors, elapsed, latencies)


def run_phase(url: str, name: str, *, clients: int, concurrency: int, max_requests: int,
              seconds: float, method: str = "GET", expect: bytes | None = None) -> Phase:
    """``load`` split over ``clients`` processes (one event loop each), results merged."""
    share = max(1, concurrency // clients)
    jobs = [dict(url=url, name=name, concurrency=share, max_requests=max_requests // clients,
                 seconds=seconds, method=method, expect=expect) for _ in range(clients)]
    if clients == 1:
        return _phase_job(jobs[0])
    with ProcessPoolExecutor(clients) as pool:
        parts = list(pool.map(_phase_job, jobs))
    return Phase(name, sum(p.ok for p in parts), sum(p.errors for p in parts),
                 max(p.seconds for p in parts), [x for p in parts for x in p.latencies_ms])


def _phase_job(job: dict[str, Any]) -> Phase:
    body = submission_body if job.pop("method") == "POST" else None
    return asyncio.run(load(**job, method="POST" if body else "GET", body=body))


_counter = 0


def submission_body() -> bytes:
    global _counter
    _counter += 1
    model, prompt, output = MODELS[_counter % 4], f"p{_counter % 50}", f"output {uuid.uuid4()}"
    return json.dumps({
        "model_id": model, "prompt_id": prompt, "output": output, "score": 1.0,
        "assertion_result": {"passed": True, "details": None}, "latency_ms": 321,
        "result_hash": output_hash(model, prompt, output), "suite_hash": "sha256:" + "ab" * 32,
        "suite_version": "1.0.0", "temperature": 0.0, "seed": 42, "runner_version": "0.3.1",
        "timestamp": datetime.now(UTC).isoformat(),
    }).encode()


def _cpu(pid: int) -> tuple[float, float]:
    """(server process CPU seconds, the load generator's: this process and its finished
    client processes; the server is a child too but still running, so not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    server = (int(fields[11]) + int(fields[12])) / tick
    me = os.times()
    return server, me.user + me.system + me.children_user + me.children_system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--files", type=int, default=400, help="raw files in the day (seed style)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time bound per phase")
    parser.add_argument("--requests", type=int, default=20_000, help="request bound per phase")
    parser.add_argument("--clients", type=int, default=2,
                        help="client processes generating the load (connections split evenly)")
    parser.add_argument("--read-concurrency", type=int, default=8)
    parser.add_argument("--submit-concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="plumbline-bench-api-"))
    server = None
    try:
        store = LocalStore(tmp / "data")
        t0 = time.perf_counter()
        rows = build_day(store, args.files)
        publish(store)
        print(f"day {DAY}: {len(store.list('raw/'))} raw files, {rows} rows "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        port = free_port()
        env = {**os.environ, "PLUMBLINE_DATA_DIR": str(tmp / "data"),
               "PLUMBLINE_SPOOL_DIR": str(tmp / "spool"), "PLUMBLINE_STORAGE": "local",
               "RATE_LIMIT_PER_MINUTE": "0"}
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env,
                                  cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        ours = httpx.get(base + "/api/data/chart").json()
        seeds = httpx.get(base + "/bench/seed-chart").json()
        assert ours == seeds, (ours, seeds)  # the same answer both ways
        print(f"chart: {ours['total_submissions']} submissions, {len(ours['models'])} models; "
              f"both paths agree")

        cpu0 = _cpu(server.pid)
        read = run_phase(base + "/api/data/chart", "GET /api/data/chart",
                         clients=args.clients, concurrency=args.read_concurrency,
                         max_requests=args.requests, seconds=args.seconds,
                         expect=b"total_submissions")
        cpu1 = _cpu(server.pid)
        print(read.line(), flush=True)
        print(f"  CPU during the read phase: server {cpu1[0] - cpu0[0]:.2f} s, "
              f"client {cpu1[1] - cpu0[1]:.2f} s over {read.seconds:.2f} s wall")
        seed = run_phase(base + "/bench/seed-chart", "seed: list+read raw per req",
                         clients=1, concurrency=4, max_requests=min(args.requests, 400),
                         seconds=args.seconds, expect=b"total_submissions")
        print(seed.line(), flush=True)
        cpu2 = _cpu(server.pid)
        submit = run_phase(base + "/api/submit", "POST /api/submit",
                           clients=args.clients, concurrency=args.submit_concurrency,
                           max_requests=args.requests, seconds=args.seconds, method="POST",
                           expect=b'"accepted"')
        cpu3 = _cpu(server.pid)
        print(submit.line(), flush=True)
        print(f"  CPU during the submit phase: server {cpu3[0] - cpu2[0]:.2f} s, "
              f"client {cpu3[1] - cpu2[1]:.2f} s over {submit.seconds:.2f} s wall")
        health = httpx.get(base + "/api/health").json()
        print(f"spool after the submit phase: {health['pending_submissions']} pending "
              f"(flushed by size/age/shutdown)")
        server.send_signal(signal.SIGTERM)  # graceful: the lifespan flushes the spool
        server.wait(60)
        stored = sum(pq.read_metadata(store.local_path(o.key)).num_rows  # type: ignore[arg-type]
                     for o in store.list("raw/") if not o.key.startswith(day_prefix(DAY)))
        verdict = "all there" if stored == submit.ok else "MISMATCH"
        print(f"after a graceful shutdown: {stored} rows in the store for {submit.ok} "
              f"acknowledged submissions ({verdict})")
        ratio = read.rps / seed.rps if seed.rps else float("inf")
        print(f"load client: {loadhttp.__name__} {loadhttp.__version__}")
        server_us = (cpu1[0] - cpu0[0]) / max(read.ok, 1) * 1e6
        print(f"read ratio vs seed: {ratio:.1f}x   (cores: {os.cpu_count()}, shared; "
              f"load average {os.getloadavg()[0]:.1f}); at {server_us:.0f} µs server CPU per "
              f"read, one free core would serve ~{1e6 / max(server_us, 1):.0f} reads/s")
        print(f"RESULT read_rps={read.rps:.0f} read_p99_ms={read.pct(0.99):.2f} "
              f"submit_rps={submit.rps:.0f} submit_p99_ms={submit.pct(0.99):.2f} "
              f"seed_read_rps={seed.rps:.1f} read_ratio_vs_seed={ratio:.1f}")
        return 0
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
