"""Throughput of the run engine against a local OpenAI-compatible server answering in 100 ms.

Part 1: 2,000 calls at 64 in flight through the whole path a run takes (the compatible servers'
plain HTTP client, our pacing and retries, scoring, records, Parquet writes to a local store;
``openai/`` would add the SDK) must finish within 1.15× the
ideal time (calls × latency ÷ concurrency). Baselines measured in the same run: the same calls
with a bare ``httpx2`` client (the SDKs' HTTP library, no SDK, no engine) and with raw
``aiohttp`` (the cheapest Python client), so the engine's own overhead is visible. Reports the
process CPU per call (all threads).

The ``http`` target variant: the same 2,000 calls at 64 in flight through an ``http/<name>``
target (a targets file, a JSON body template, JSONPath for the text and token counts, no SDK)
against the stub's custom ``/rag`` API must finish within 1.2× ideal.

The machine is shared with other jobs, so each timing is the best of three runs (all printed).

Part 2: the same 2,000 calls with a requests-per-minute limit; the achieved rate must stay
within 5 % under the limit (and never above it).

    .venv/bin/python tests/bench/bench_throughput.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tasks.catalog import load_suite  # noqa: E402
from tasks.retry import RetryPolicy  # noqa: E402
from tasks.run.plan import resolve_config  # noqa: E402
from tasks.run.shard import run_shard  # noqa: E402
from tasks.storage.local import LocalStore  # noqa: E402
from tasks.suites.model import Suite  # noqa: E402

CALLS = 2000
CONCURRENCY = 64
LATENCY_S = 0.100
RPM_LIMIT = 6000  # 100 a second: binding (64 in flight could do 640), ~20 s for 2,000 calls
MODEL = "openai-compatible/bench-model"
HTTP_MODEL = "http/bench-rag"
HTTP_RATIO_MAX = 1.2
REPEATS = 3


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stub_server",
         "--latency-ms", str(LATENCY_S * 1000)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"stub server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def make_suite(folder: Path, n: int) -> Suite:
    folder.mkdir(parents=True)
    (folder / "suite.toml").write_text(
        'name = "bench"\nversion = "1.0.0"\ndescription = "throughput"\n')
    with (folder / "cases.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"b-{i:05d}", "input": f"Repeat after me: token{i}",
                                 "ideal": [f"token{i}"], "assertion": {"type": "contains"}})
                     + "\n")
    return load_suite(folder)


def engine_run(suite: Suite, store: LocalStore, base_url: str, run_id: str,
               rpm: float | None = None) -> tuple[float, float, list[dict]]:
    config = resolve_config(suite, run_id=run_id, concurrency=CONCURRENCY)
    opts = {"openai-compatible": {
        "base_url": base_url, "api_key": "bench",
        "limits": {"max_in_flight": CONCURRENCY, **({"rpm": rpm} if rpm else {})},
        "retry": RetryPolicy(max_attempts=3)}}
    cpu0, t0 = time.process_time(), time.perf_counter()
    records = run_shard(suite, MODEL, suite.cases, config, store, provider_options=opts)
    return time.perf_counter() - t0, time.process_time() - cpu0, records


def write_targets(folder: Path, base_url: str) -> Path:
    path = folder / "targets.toml"
    path.write_text(f"""
[targets.bench-rag]
url = "{base_url}/rag"
headers = {{ Authorization = "Bearer bench" }}
body = {{ question = "{{{{input}}}}", history = "{{{{messages}}}}", seed = "{{{{seed}}}}" }}
response = {{ text = "$.data.answer.text", input_tokens = "$.meta.tokens.prompt", \
output_tokens = "$.meta.tokens.completion" }}
limits = {{ max_in_flight = {CONCURRENCY} }}
""")
    return path


def http_target_run(suite: Suite, store: LocalStore, targets: Path, run_id: str
                    ) -> tuple[float, float, list[dict]]:
    config = resolve_config(suite, run_id=run_id, concurrency=CONCURRENCY)
    opts = {"http": {"targets_file": targets, "retry": RetryPolicy(max_attempts=3)}}
    cpu0, t0 = time.process_time(), time.perf_counter()
    records = run_shard(suite, HTTP_MODEL, suite.cases, config, store, provider_options=opts)
    return time.perf_counter() - t0, time.process_time() - cpu0, records


def bare_run(base_url: str, calls: int) -> tuple[float, float]:
    async def go() -> None:
        limits = httpx2.Limits(max_connections=CONCURRENCY,
                               max_keepalive_connections=CONCURRENCY)
        async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
            todo = iter(range(calls))

            async def worker() -> None:
                for i in todo:
                    r = await client.post(f"{base_url}/chat/completions", json={
                        "model": "m", "messages": [{"role": "user", "content": f"token{i}"}]})
                    r.json()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0, time.process_time() - cpu0


def aiohttp_run(base_url: str, calls: int) -> tuple[float, float]:
    """The floor for any Python client: raw aiohttp, no httpx2 objects, no SDK."""
    import aiohttp

    async def go() -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            todo = iter(range(calls))

            async def worker() -> None:
                for i in todo:
                    async with session.post(f"{base_url}/chat/completions", json={
                            "model": "m",
                            "messages": [{"role": "user", "content": f"token{i}"}]}) as r:
                        json.loads(await r.read())

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> int:
    server, base_url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            suite = make_suite(Path(tmp) / "bench", CALLS)
            store = LocalStore(Path(tmp) / "data")
            ideal = CALLS * LATENCY_S / CONCURRENCY
            print(f"stub server {base_url}, {LATENCY_S * 1000:.0f} ms per answer; "
                  f"{CALLS} calls at {CONCURRENCY} in flight; ideal {ideal:.3f} s")

            warm = make_suite(Path(tmp) / "warm", 2 * CONCURRENCY)
            engine_run(warm, store, base_url, "warmup")  # imports, first connections

            # Best of REPEATS: other jobs share this machine, and a run they starve says more
            # about them than about the engine. Every run is printed.
            bare = [bare_run(base_url, CALLS) for _ in range(REPEATS)]
            for w, c in bare:
                print(f"  bare httpx2 client: {w:.3f} s (ratio_to_ideal {w / ideal:.3f}), "
                      f"cpu {c * 1000 / CALLS:.3f} ms/call")
            bare_wall, _ = min(bare)
            floor = [aiohttp_run(base_url, CALLS) for _ in range(REPEATS)]
            for w, c in floor:
                print(f"  raw aiohttp (no SDK): {w:.3f} s (ratio_to_ideal {w / ideal:.3f}), "
                      f"cpu {c * 1000 / CALLS:.3f} ms/call")
            floor_wall, floor_cpu = min(floor)
            runs = []
            for i in range(REPEATS):
                wall_i, cpu_i, records = engine_run(suite, store, base_url, f"unlimited-{i}")
                errors = sum(r["error"] is not None for r in records)
                runs.append((wall_i, cpu_i, errors))
                print(f"  engine (HTTP + pacing + scoring + Parquet): {wall_i:.3f} s "
                      f"(ratio_to_ideal {wall_i / ideal:.3f}), cpu "
                      f"{cpu_i * 1000 / CALLS:.3f} ms/call, {len(records)} rows, {errors} errors")
            wall, cpu, errors = min(runs)
            targets = write_targets(Path(tmp), base_url)
            http_target_run(warm, store, targets, "http-warmup")
            http_runs = []
            for i in range(REPEATS):
                wall_i, cpu_i, records = http_target_run(suite, store, targets, f"http-{i}")
                errors_i = sum(r["error"] is not None for r in records)
                http_runs.append((wall_i, cpu_i, errors_i))
                print(f"  http target (template + JSONPath + scoring + Parquet): {wall_i:.3f} s "
                      f"(ratio_to_ideal {wall_i / ideal:.3f}), cpu "
                      f"{cpu_i * 1000 / CALLS:.3f} ms/call, {len(records)} rows, "
                      f"{errors_i} errors")
            http_wall, http_cpu, http_errors = min(http_runs)
            http_ratio = http_wall / ideal
            ratio = wall / ideal
            cpu_ms = cpu * 1000 / CALLS
            print(f"best of {REPEATS}: bare httpx2 client {bare_wall / ideal:.3f}x ideal; raw "
                  f"aiohttp {floor_wall / ideal:.3f}x ideal "
                  f"({floor_cpu * 1000 / CALLS:.3f} ms cpu/call); engine {ratio:.3f}x ideal "
                  f"({wall / bare_wall:.3f}x the bare httpx2 client), cpu {cpu_ms:.3f} ms/call; "
                  f"http target {http_ratio:.3f}x ideal, cpu "
                  f"{http_cpu * 1000 / CALLS:.3f} ms/call")

            wall_l, _, limited = engine_run(suite, store, base_url, "limited", rpm=RPM_LIMIT)
            achieved = len(limited) / wall_l * 60.0
            errors_l = sum(r["error"] is not None for r in limited)
            print(f"rpm limit {RPM_LIMIT}: {len(limited)} calls in {wall_l:.3f} s -> "
                  f"{achieved:.0f} rpm ({achieved / RPM_LIMIT:.4f} of the limit), "
                  f"{errors_l} errors")

            ok_speed = ratio <= 1.15 and errors == 0
            ok_rpm = 0.95 * RPM_LIMIT <= achieved <= RPM_LIMIT and errors_l == 0
            ok_http = http_ratio <= HTTP_RATIO_MAX and http_errors == 0
            print(f"throughput within 1.15x ideal: {'PASS' if ok_speed else 'FAIL'}; "
                  f"rate within 5% under the limit: {'PASS' if ok_rpm else 'FAIL'}; "
                  f"http target within {HTTP_RATIO_MAX}x ideal: "
                  f"{'PASS' if ok_http else 'FAIL'}")
            print(f"RESULT calls={CALLS} concurrency={CONCURRENCY} ratio_to_ideal={ratio:.3f} "
                  f"cpu_ms_per_call={cpu_ms:.3f} rpm_limit={RPM_LIMIT} "
                  f"achieved_rpm={achieved:.0f} http_ratio={http_ratio:.3f} "
                  f"http_cpu_ms_per_call={http_cpu * 1000 / CALLS:.3f}")
            return 0 if ok_speed and ok_rpm and ok_http else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
