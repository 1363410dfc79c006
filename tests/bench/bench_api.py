"""Benchmark the API under real uvicorn, as ``plumbline api --workers N`` runs it: GET
/api/data/chart (a materialized summary) against the seed's way of serving the same chart (list
and read the day's raw Parquet files per request), and POST /api/submit (acknowledged only once
durable in the fsync'd spool).

Longer than 400 lines because one run holds every comparison the API's targets are judged by (the
limit across workers, limited against baseline reads, the seed's path, submissions, the dedupe
store), each with its servers, load and report, so they are measured on the same machine state.

The server runs in its own process (this file with ``--serve``, through ``api.server.serve``,
the production server configuration) with ``--workers`` worker processes; the load comes from
this process through httpx with many concurrent keep-alive connections, bounded in request count
and time. Every request carries an ``X-Forwarded-For`` client address (the server trusts
127.0.0.1 as its proxy), a random one per request for the load phases, so the per-IP rate limit
(60/min by default) is on and counted in the shared database on every request, as for a
crowd of clients behind a reverse proxy. In the same run:

- a baseline server, identical but with the rate limit off, serves the same reads (the cost of
  the shared limit is the difference);
- the limit check: 2 x limit requests from one client address, sent alternately over a
  connection to each worker, must get exactly ``limit`` answers 200, then 429s;
- the dedupe store: ``--dedupe-submissions`` (100,000) results through /api/submit/batch, then
  the spool database's dedupe keys and bytes, and the workers' memory, under
  ``--dedupe-max-keys``.

    .venv/bin/python tests/bench/bench_api.py --workers 2 [--files 400] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
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


def bench_app() -> Any:
    """The API as ``plumbline api`` serves it, plus the seed's read path and the worker's pid
    (outside /api/, so neither is rate limited). A factory: each worker process builds its own."""
    from fastapi.responses import PlainTextResponse, Response

    from api import create_app
    from tasks.settings import Settings

    settings = Settings()
    store = LocalStore(settings.data_dir)
    app = create_app(settings, store)

    @app.get("/bench/seed-chart", include_in_schema=False)
    def seed_chart() -> Response:  # sync, like the seed's handler: it blocks on file reads
        return Response(seed_chart_bytes(store, DAY), media_type="application/json")

    @app.get("/bench/pid", include_in_schema=False)
    async def pid() -> PlainTextResponse:
        return PlainTextResponse(str(os.getpid()))

    return app


def serve(port: int, workers: int) -> int:
    from api.server import serve as serve_api
    from tasks.settings import Settings

    return serve_api(Settings(), host="127.0.0.1", port=port, workers=workers,
                     app="tests.bench.bench_api:bench_app", log_level="warning")


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


def random_client() -> str:
    """A client address from 10.0.0.0/8: 16 M of them, so no client nears the per-IP limit."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


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
                        r = await client.get(url, headers={"x-forwarded-for": random_client()})
                    else:
                        r = await client.post(url, content=body(), headers={
                            "content-type": "application/json",
                            "x-forwarded-for": random_client()})
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


def submission() -> dict[str, Any]:
    """A Pramana CLI payload with a new output (so a new dedupe key)."""
    global _counter
    _counter += 1
    model, prompt, output = MODELS[_counter % 4], f"p{_counter % 50}", f"output {uuid.uuid4()}"
    return {
        "model_id": model, "prompt_id": prompt, "output": output, "score": 1.0,
        "assertion_result": {"passed": True, "details": None}, "latency_ms": 321,
        "result_hash": output_hash(model, prompt, output), "suite_hash": "sha256:" + "ab" * 32,
        "suite_version": "1.0.0", "temperature": 0.0, "seed": 42, "runner_version": "0.3.1",
        "timestamp": datetime.now(UTC).isoformat(),
    }


def submission_body() -> bytes:
    return json.dumps(submission()).encode()


async def submit_batches(url: str, total: int, *, batch: int,
                         concurrency: int) -> tuple[int, float]:
    """``total`` results through /api/submit/batch; (accepted, seconds)."""
    accepted = 0
    left = total
    limits = loadhttp.Limits(max_connections=concurrency)
    async with loadhttp.AsyncClient(limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal accepted, left
            while left > 0:
                n = min(batch, left)
                left -= n
                body = json.dumps({"results": [submission() for _ in range(n)]})
                r = await client.post(url, content=body, headers={
                    "content-type": "application/json", "x-forwarded-for": random_client()})
                r.raise_for_status()
                accepted += r.json()["accepted"]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, time.perf_counter() - start


def limit_check(port: int, workers: int, limit: int) -> tuple[list[int], Counter[int]]:
    """2 x ``limit`` reads from one client address, alternately over a connection to each
    worker (found by asking /bench/pid on fresh connections): the status codes in order, and
    how many answers 200 each worker gave."""
    conns: dict[int, http.client.HTTPConnection] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/bench/pid")
        pid = int(conn.getresponse().read())
        if pid in conns:
            conn.close()
            continue
        conns[pid] = conn
        if len(conns) == workers:
            break
    order = list(conns.items())
    codes: list[int] = []
    served: Counter[int] = Counter()
    for i in range(2 * limit):
        pid, conn = order[i % len(order)]
        conn.request("GET", "/api/data/chart", headers={"x-forwarded-for": "192.0.2.77"})
        response = conn.getresponse()
        response.read()
        codes.append(response.status)
        served[pid] += response.status == 200
    for conn in conns.values():
        conn.close()
    return codes, served


def dedupe_store(spool_dir: Path) -> dict[str, float]:
    """The dedupe keys the spool remembers and the bytes they take (SQLite's dbstat, when
    compiled in), with the database and log file sizes."""
    db = spool_dir / "submissions.sqlite3"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (keys,) = conn.execute("SELECT count(*) FROM seen").fetchone()
        try:
            (seen_bytes,) = conn.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                "('seen', 'seen_user', 'seen_accepted')").fetchone()
        except sqlite3.Error:
            seen_bytes = float("nan")
    finally:
        conn.close()
    wal = Path(f"{db}-wal")
    return {"keys": keys, "seen_bytes": seen_bytes or 0, "db_bytes": db.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0}


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[float, float]:
    """(server CPU seconds: the supervisor and its worker processes, the load generator's: this
    process and its finished client processes; the server is a child too but still running, so
    not counted)."""
    server = _proc_cpu(pid) + sum(_proc_cpu(child) for child in _children(pid))
    me = os.times()
    return server, me.user + me.system + me.children_user + me.children_system


def rss_mib(pid: int) -> float:
    """Resident memory of the server's worker processes (or the server itself), MiB."""
    total = 0
    for proc in _children(pid) or [pid]:
        try:
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: Path, name: str, workers: int,
                 **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {**os.environ, "PLUMBLINE_DATA_DIR": str(tmp / "data"),
                "PLUMBLINE_SPOOL_DIR": str(tmp / f"spool-{name}"), "PLUMBLINE_STORAGE": "local",
                "TRUSTED_PROXIES": "127.0.0.1", **env}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                               "--workers", str(workers)], env=full_env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            # With several workers, the supervisor's children must all be there too.
            if (httpx.get(base + "/api/health", timeout=1).status_code == 200
                    and (workers == 1 or len(_children(server.pid)) >= workers)):
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        stop_server(server)
        raise RuntimeError(f"server {name} did not start")
    return server, base


def stop_server(server: subprocess.Popen[bytes] | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)  # graceful: each worker flushes the spool
    try:
        server.wait(120)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--files", type=int, default=400, help="raw files in the day (seed style)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time bound per phase")
    parser.add_argument("--requests", type=int, default=20_000, help="request bound per phase")
    parser.add_argument("--clients", type=int, default=2,
                        help="client processes generating the load (connections split evenly)")
    parser.add_argument("--read-concurrency", type=int, default=8)
    parser.add_argument("--submit-concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2,
                        help="read phases per server, alternating baseline and limited")
    parser.add_argument("--rate-limit", type=int, default=60, help="requests per minute per IP")
    parser.add_argument("--dedupe-submissions", type=int, default=100_000,
                        help="results sent through /api/submit/batch to fill the dedupe store "
                             "(0: skip)")
    parser.add_argument("--dedupe-max-keys", type=int, default=50_000,
                        help="DEDUPE_MAX_KEYS for the run (the default setting is 1,000,000)")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.workers)

    tmp = Path(tempfile.mkdtemp(prefix="plumbline-bench-api-"))
    limited = baseline = None
    try:
        store = LocalStore(tmp / "data")
        t0 = time.perf_counter()
        rows = build_day(store, args.files)
        publish(store)
        print(f"day {DAY}: {len(store.list('raw/'))} raw files, {rows} rows "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        limited, base = start_server(
            tmp, "limited", args.workers, RATE_LIMIT_PER_MINUTE=str(args.rate_limit),
            DEDUPE_MAX_KEYS=str(args.dedupe_max_keys))
        baseline, base0 = start_server(tmp, "baseline", args.workers, RATE_LIMIT_PER_MINUTE="0")
        print(f"servers: {args.workers} worker(s) each; limited: {args.rate_limit} requests/min "
              f"per client IP, counted in the shared database; baseline: no rate limit")
        ours = httpx.get(base + "/api/data/chart").json()
        seeds = httpx.get(base + "/bench/seed-chart").json()
        assert ours == seeds, (ours, seeds)  # the same answer both ways
        print(f"chart: {ours['total_submissions']} submissions, {len(ours['models'])} models; "
              f"both paths agree")

        codes, served = limit_check(int(base.rsplit(":", 1)[1]), args.workers, args.rate_limit)
        ok = codes.count(200)
        holds = codes == [200] * args.rate_limit + [429] * args.rate_limit
        print(f"limit check: {len(codes)} reads from one client over {len(served)} worker "
              f"connection(s): {ok} x 200 (per worker: "
              f"{', '.join(str(n) for n in served.values())}), then {codes.count(429)} x 429 "
              f"-> {'holds across workers' if holds else 'FAILS'}")

        reads: list[Phase] = []
        reads0: list[Phase] = []
        cpu_limited = cpu_baseline = 0.0
        for _ in range(args.rounds):
            for server, url, out in ((baseline, base0, reads0), (limited, base, reads)):
                c0 = _cpu(server.pid)
                label = "GET chart, no limit" if out is reads0 else "GET /api/data/chart"
                phase = run_phase(url + "/api/data/chart", label,
                                  clients=args.clients, concurrency=args.read_concurrency,
                                  max_requests=args.requests, seconds=args.seconds,
                                  expect=b"total_submissions")
                c1 = _cpu(server.pid)
                out.append(phase)
                us = (c1[0] - c0[0]) / max(phase.ok, 1) * 1e6
                if out is reads0:
                    cpu_baseline += us / args.rounds
                else:
                    cpu_limited += us / args.rounds
                print(phase.line(), f" server CPU {us:.0f} µs/req", flush=True)
        stop_server(baseline)
        read = max(reads, key=lambda p: p.rps)
        read0 = max(reads0, key=lambda p: p.rps)

        seed = run_phase(base + "/bench/seed-chart", "seed: list+read raw per req",
                         clients=1, concurrency=4, max_requests=min(args.requests, 400),
                         seconds=args.seconds, expect=b"total_submissions")
        print(seed.line(), flush=True)
        cpu2 = _cpu(limited.pid)
        submit = run_phase(base + "/api/submit", "POST /api/submit",
                           clients=args.clients, concurrency=args.submit_concurrency,
                           max_requests=args.requests, seconds=args.seconds, method="POST",
                           expect=b'"accepted"')
        cpu3 = _cpu(limited.pid)
        print(submit.line(), flush=True)
        print(f"  CPU during the submit phase: server {cpu3[0] - cpu2[0]:.2f} s, "
              f"client {cpu3[1] - cpu2[1]:.2f} s over {submit.seconds:.2f} s wall")

        acked = submit.ok
        dedupe: dict[str, float] = {}
        if args.dedupe_submissions:
            before = dedupe_store(tmp / "spool-limited")
            # In fifths, sampling the workers' memory and the kept keys after each.
            rss = [rss_mib(limited.pid)]
            kept = [before["keys"]]
            accepted, secs = 0, 0.0
            for part in range(5):
                n = args.dedupe_submissions // 5 + (args.dedupe_submissions % 5 if part == 4 else 0)
                got, took = asyncio.run(submit_batches(
                    base + "/api/submit/batch", n, batch=500, concurrency=4))
                accepted += got
                secs += took
                rss.append(rss_mib(limited.pid))
                kept.append(dedupe_store(tmp / "spool-limited")["keys"])
            acked += accepted
            # Each worker prunes after every 10,000 keys it accepted and at least once a minute:
            # wait for the minute's prune to bring the table back under the cap.
            waited = time.perf_counter()
            dedupe = dedupe_store(tmp / "spool-limited")
            while dedupe["keys"] > args.dedupe_max_keys and time.perf_counter() - waited < 75:
                time.sleep(1)
                dedupe = dedupe_store(tmp / "spool-limited")
            waited = time.perf_counter() - waited
            per_key = dedupe["seen_bytes"] / max(dedupe["keys"], 1)
            print(f"dedupe store: {before['keys']:.0f} keys before, {accepted} more accepted in "
                  f"{secs:.1f} s ({accepted / secs:.0f}/s through /api/submit/batch, 500 a "
                  f"request, 4 connections) -> {dedupe['keys']:.0f} keys kept "
                  f"(DEDUPE_MAX_KEYS={args.dedupe_max_keys}), {dedupe['seen_bytes'] / 2**20:.1f} "
                  f"MiB in the seen table and its indexes ({per_key:.0f} B/key); spool database "
                  f"file {dedupe['db_bytes'] / 2**20:.1f} MiB + log "
                  f"{dedupe['wal_bytes'] / 2**20:.1f} MiB", flush=True)
            print(f"  after each fifth: keys kept {', '.join(f'{k:.0f}' for k in kept)} "
                  f"(then {dedupe['keys']:.0f} after {waited:.0f} s more); "
                  f"workers' memory {', '.join(f'{m:.0f}' for m in rss)} MiB; at the default "
                  f"cap of 1,000,000 keys the table would take ~{per_key * 1e6 / 2**20:.0f} MiB",
                  flush=True)
        health = httpx.get(base + "/api/health").json()
        print(f"spool after the submit phases: {health['pending_submissions']} pending "
              f"(flushed by size/age/shutdown)")
        stop_server(limited)
        stored = sum(pq.read_metadata(store.local_path(o.key)).num_rows  # type: ignore[arg-type]
                     for o in store.list("raw/") if not o.key.startswith(day_prefix(DAY)))
        verdict = "all there" if stored == acked else "MISMATCH"
        print(f"after a graceful shutdown: {stored} rows in the store for {acked} "
              f"acknowledged submissions ({verdict})")
        ratio = read.rps / seed.rps if seed.rps else float("inf")
        print(f"load client: {loadhttp.__name__} {loadhttp.__version__}")
        print(f"read ratio vs seed: {ratio:.1f}x; best reads with the shared limit "
              f"{read.rps:.0f} req/s (p99 {read.pct(0.99):.2f} ms) vs baseline {read0.rps:.0f} "
              f"req/s (p99 {read0.pct(0.99):.2f} ms); server CPU per read {cpu_limited:.0f} vs "
              f"{cpu_baseline:.0f} µs (cores: {os.cpu_count()}, shared; load average "
              f"{os.getloadavg()[0]:.1f})")
        print(f"RESULT workers={args.workers} read_rps={read.rps:.0f} "
              f"read_p99_ms={read.pct(0.99):.2f} baseline_read_rps={read0.rps:.0f} "
              f"baseline_read_p99_ms={read0.pct(0.99):.2f} "
              f"read_cpu_us={cpu_limited:.0f} baseline_read_cpu_us={cpu_baseline:.0f} "
              f"limit={args.rate_limit} limit_200={ok} limit_429={codes.count(429)} "
              f"limit_workers={len(served)} "
              f"submit_rps={submit.rps:.0f} submit_p99_ms={submit.pct(0.99):.2f} "
              f"dedupe_submissions={args.dedupe_submissions} "
              f"dedupe_keys={dedupe.get('keys', 0):.0f} "
              f"dedupe_mib={dedupe.get('seen_bytes', 0) / 2**20:.1f} "
              f"seed_read_rps={seed.rps:.1f} read_ratio_vs_seed={ratio:.1f}")
        return 0 if holds and stored == acked else 1
    finally:
        stop_server(baseline)
        stop_server(limited)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
