"""What a user's ``plumbline run`` costs, whole process, against the calls it makes.

Longer than 400 lines: one benchmark with its own stub process, floor client, Prefect server and
store checks, so that one invocation measures every variant side by side.

In one invocation, on a generated suite of 2,000 cases (``contains "Paris"``, 1 sample,
temperature 0) against the repo's stub LLM server answering in 100 ms, 64 calls in flight:

- the floor: a bare aiohttp client in its own process (Python start-up included);
- ``plumbline run`` exactly as a user types it (the real CLI in a subprocess, default flags
  except ``--concurrency 64``): against a running Prefect server (``prefect server start`` on a
  free port, started here, ``PREFECT_API_URL`` set), and on Prefect's ephemeral API (no
  ``PREFECT_API_URL``, no profile naming a server);
- 20,000 calls against the server (stopped, and reported as a timeout, after
  ``--big-limit-s``, 600 s by default).

Each variant gets one small warm-up run first (the ephemeral API's first start creates its
database; a server's first run registers the flow): a user's second run, not their first ever.
Whole-process wall and CPU come from ``os.wait4`` on the CLI's process (its waited-for children,
the ephemeral API's server among them, included). Every run checks that the stub answered
every call once and that the store holds exactly one row per cell.

Targets (issue 15): ≤ 1.6× ideal against a server, ≤ 3.0× ephemeral, ≤ 1.15× for 20,000 calls,
≤ 1.5 ms of whole-process CPU per call (server variant). Each timing is the median of
``--repeats`` runs (all printed); the machine is shared with other jobs.

    .venv/bin/python tests/bench/bench_run.py            # the full benchmark
    .venv/bin/python tests/bench/bench_run.py --quick    # 500 / 2,000 calls, one repeat
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.stub_server import StubLLMServer  # noqa: E402

CALLS = 2000
BIG_CALLS = 20000
CONCURRENCY = 64
LATENCY_S = 0.100
MODEL = "openai-compatible/stub-model"
WARMUP_CALLS = 64
TARGETS = {"server": 1.6, "ephemeral": 3.0, "big": 1.15, "cpu_ms_per_call": 1.5}
PYTHON = sys.executable
# The user's command: the venv's `plumbline` when there is one, else the same entry point.
PLUMBLINE = [str(Path(PYTHON).parent / "plumbline")] if (Path(PYTHON).parent / "plumbline"
                                                           ).exists() else [PYTHON, "-m",
                                                                            "flows.cli"]


# --- the stub, in its own process, with a request counter ---------------------------------------

class CountedStub(StubLLMServer):
    """The stub LLM server; ``GET /count`` answers how many completions it has served."""

    async def _respond(self, path: str, headers: dict[str, str], raw: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        if path != "/count":
            return await super()._respond(path, headers, raw, writer)
        body = json.dumps({"requests": self.requests}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return True


def serve_stub() -> None:
    async def run() -> None:
        server = CountedStub(latency_s=LATENCY_S)
        await server.start()
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())


def stub_count(base: str) -> int:
    with urllib.request.urlopen(f"{base}/count", timeout=10) as r:
        return int(json.loads(r.read())["requests"])


# --- the floor -------------------------------------------------------------------------------

def floor_client(base_url: str, calls: int) -> None:
    """The cheapest Python client: raw aiohttp, ``calls`` requests, ``CONCURRENCY`` in flight."""
    import aiohttp

    async def go() -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            todo = iter(range(calls))

            async def worker() -> None:
                for i in todo:
                    async with session.post(f"{base_url}/chat/completions", json={
                            "model": "m", "messages": [{"role": "user", "content": f"Paris {i}"}]
                    }) as r:
                        json.loads(await r.read())

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    asyncio.run(go())


# --- measuring a process ---------------------------------------------------------------------

@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    out: str
    err: str
    status: int


class TimedOut(Exception):
    """A measured process ran past its time limit (and was stopped)."""


def measure(cmd: list[str], env: dict[str, str], cwd: Path,
            limit_s: float | None = None) -> Measured:
    """Run ``cmd`` to its end; its wall time and CPU (user + system, waited-for children too).

    Past ``limit_s`` the process is killed and ``TimedOut`` raised."""
    with tempfile.TemporaryFile(mode="w+") as out_f, tempfile.TemporaryFile(mode="w+") as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out_f, stderr=err_f)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG if limit_s else 0)
                if pid:
                    break
                if time.perf_counter() - t0 > limit_s:  # type: ignore[operator]
                    raise TimedOut(f"stopped after {limit_s:g} s")
                time.sleep(0.05)
        except BaseException:  # interrupted or too slow: leave no run behind
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        return Measured(wall, usage.ru_utime + usage.ru_stime, out_f.read(), err_f.read(),
                        proc.returncode)


def proc_tree_cpu_s(pid: int) -> float:
    """CPU seconds so far of ``pid`` and its live descendants (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


# --- the scene: suite, stub, Prefect server ---------------------------------------------------

def write_suite(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "suite.toml").write_text(
        f'name = "{folder.name}"\nversion = "1.0.0"\ndescription = "bench_run"\n\n'
        "[defaults]\nsamples = 1\ntemperature = 0.0\n")
    with (folder / "cases.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"c-{i:05d}",
                                 "input": f"Which city is the capital of France, Paris? ({i})",
                                 "ideal": "Paris", "assertion": {"type": "contains"}}) + "\n")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def started(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A background process in its own session, stopped (the whole group) on the way out."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health",
                                                                   timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout_s} s")


def base_env(tmp: Path, home: str) -> dict[str, str]:
    """A clean environment: no Plumbline or Prefect settings from the caller's shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PLUMBLINE_", "PREFECT_", "OPENAI_COMPATIBLE_"))}
    env.update({"PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp / home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    return env


# --- one run of the CLI, checked -------------------------------------------------------------

@dataclass
class Run:
    label: str
    calls: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None

    def ratio(self) -> float:
        return self.wall_s / (self.calls * LATENCY_S / CONCURRENCY)


def cli_run(label: str, suite: Path, calls: int, env: dict[str, str], data: Path, stub: str,
            extra: tuple[str, ...] = (), server_pid: int | None = None,
            limit_s: float | None = None) -> Run:
    cmd = [*PLUMBLINE, "run", "--suite", str(suite), "--models", MODEL, "--concurrency",
           str(CONCURRENCY), *extra]
    before = stub_count(stub)
    server_cpu0 = proc_tree_cpu_s(server_pid) if server_pid else None
    m = measure(cmd, {**env, "PLUMBLINE_DATA_DIR": str(data)}, ROOT, limit_s)
    server_cpu = (proc_tree_cpu_s(server_pid) - server_cpu0
                  if server_pid and server_cpu0 is not None else None)
    if m.status != 0:
        raise RuntimeError(f"{label}: plumbline run exited {m.status}\n{m.out}\n{m.err[-4000:]}")
    served = stub_count(stub) - before
    said = re.search(r"^run (\S+): (\d+) rows \((\d+) new\)", m.out, re.M)
    if said is None:
        raise RuntimeError(f"{label}: no result line in\n{m.out}")
    run_id = said[1]
    stored = stored_cells(data, run_id)
    problems = []
    if served != calls:
        problems.append(f"the stub served {served} calls, not {calls}")
    if len(stored) != calls or len(set(stored)) != calls:
        problems.append(f"the store holds {len(stored)} rows for {len(set(stored))} cells, "
                        f"not one row for each of {calls}")
    if problems:
        raise RuntimeError(f"{label}: " + "; ".join(problems))
    return Run(label, calls, m.wall_s, m.cpu_s, server_cpu)


def stored_cells(data: Path, run_id: str) -> list[tuple[str, str, int]]:
    import pyarrow.parquet as pq

    cells = []
    for f in sorted(data.glob("raw/**/*.parquet")):
        t = pq.read_table(f, columns=["run_id", "model_id", "prompt_id", "sample_idx"])
        cells.extend((r["model_id"], r["prompt_id"], r["sample_idx"])
                     for r in t.to_pylist() if r["run_id"] == run_id)
    return cells


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]


def row(name: str, calls: int, wall: float, cpu: float, server_cpu: float | None = None) -> str:
    ideal = calls * LATENCY_S / CONCURRENCY
    extra = f"{server_cpu * 1000 / calls:.2f}" if server_cpu is not None else "-"
    return (f"| {name} | {calls} | {wall:.2f} s | {wall / ideal:.2f} | "
            f"{cpu * 1000 / calls:.2f} ms | {extra} |")


# --- the benchmark ---------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="500 calls (2,000 for the big run), one repeat: for iteration")
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant (median)")
    parser.add_argument("--no-big", action="store_true", help="skip the 20,000-call run")
    parser.add_argument("--big-limit-s", type=float, default=600.0,
                        help="stop the 20,000-call run after this long (reported as a timeout)")
    parser.add_argument("--stub", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, metavar=("BASE_URL", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        serve_stub()
        return 0
    if args.floor:
        floor_client(args.floor[0], int(args.floor[1]))
        return 0
    calls, big_calls = (500, 2000) if args.quick else (CALLS, BIG_CALLS)
    repeats = args.repeats or (1 if args.quick else 3)

    tmp = Path(tempfile.mkdtemp(prefix="bench-run-"))
    try:
        return bench(tmp, calls, big_calls, repeats, not args.no_big, args.big_limit_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(tmp: Path, calls: int, big_calls: int, repeats: int, big: bool,
          big_limit_s: float) -> int:
    suite = write_suite(tmp / "paris", calls)
    warm = write_suite(tmp / "warmup", WARMUP_CALLS)
    ideal = calls * LATENCY_S / CONCURRENCY
    stub_proc = subprocess.Popen([PYTHON, __file__, "--stub"], cwd=ROOT, stdout=subprocess.PIPE,
                                 text=True, start_new_session=True)
    try:
        assert stub_proc.stdout is not None
        line = stub_proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub server did not start: {line!r}")
        stub = f"http://127.0.0.1:{int(line.split()[1])}"
        print(f"stub {stub}, {LATENCY_S * 1000:.0f} ms per answer; {calls} calls at "
              f"{CONCURRENCY} in flight: ideal {ideal:.3f} s; median of {repeats}", flush=True)
        print(f"command: plumbline run --suite <generated> --models {MODEL} "
              f"--concurrency {CONCURRENCY}", flush=True)
        return scenes(tmp, suite, warm, stub, calls, big_calls, repeats, big, big_limit_s)
    finally:
        os.killpg(stub_proc.pid, signal.SIGTERM)
        stub_proc.wait(10)


def scenes(tmp: Path, suite: Path, warm: Path, stub: str, calls: int, big_calls: int,
           repeats: int, big: bool, big_limit_s: float) -> int:
    env_stub = {"OPENAI_COMPATIBLE_BASE_URL": f"{stub}/v1"}
    data = tmp / "data"
    lines = ["| what ran | calls | wall | x ideal | CPU per call (whole process) | "
             "server CPU per call |", "| --- | --- | --- | --- | --- | --- |"]

    floors = []
    for _ in range(repeats):
        before = stub_count(stub)
        m = measure([PYTHON, __file__, "--floor", f"{stub}/v1", str(calls)], base_env(tmp, "x"),
                    ROOT)
        if m.status != 0 or stub_count(stub) - before != calls:
            raise RuntimeError(f"floor client failed:\n{m.err[-2000:]}")
        floors.append(Run("floor", calls, m.wall_s, m.cpu_s, None))
        print(f"  floor (bare aiohttp process): {m.wall_s:.2f} s, x{floors[-1].ratio():.2f}",
              flush=True)
    floor = median_run(floors)
    lines.append(row("bare aiohttp client, own process (the floor)", calls, floor.wall_s,
                     floor.cpu_s))

    # Against a running Prefect server, as `prefect server start` runs it for a user.
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = base_env(tmp, "server-home")
    log = tmp / "prefect-server.log"
    with started([PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                  str(port)], server_env, log) as server:
        wait_healthy(api, server, log, 120)
        env = {**base_env(tmp, "client-home"), "PREFECT_API_URL": api, **env_stub}
        cli_run("server warm-up", warm, WARMUP_CALLS, env, data, stub)
        runs = []
        for i in range(repeats):
            runs.append(cli_run("server", suite, calls, env, data, stub, server_pid=server.pid))
            print(f"  plumbline run, server {i + 1}: {runs[-1].wall_s:.2f} s, "
                  f"x{runs[-1].ratio():.2f}, cpu {runs[-1].cpu_s * 1000 / calls:.2f} ms/call",
                  flush=True)
        srv = median_run(runs)
        lines.append(row("`plumbline run`, as typed, against a Prefect server", calls,
                         srv.wall_s, srv.cpu_s, srv.server_cpu_s))
        diag = cli_run("server, one shard", suite, calls, env, data, stub,
                       extra=("--shard-size", "1000"), server_pid=server.pid)
        lines.append(row("diagnostic: same, `--shard-size 1000`", calls, diag.wall_s,
                         diag.cpu_s, diag.server_cpu_s))
        print(f"  diagnostic, --shard-size 1000: {diag.wall_s:.2f} s, x{diag.ratio():.2f}",
              flush=True)

        # Ephemeral: no PREFECT_API_URL and no profile naming a server (the server above idles).
        eph_env = {**base_env(tmp, "ephemeral-home"), **env_stub}
        cli_run("ephemeral warm-up", warm, WARMUP_CALLS, eph_env, data, stub)
        runs = []
        for i in range(repeats):
            runs.append(cli_run("ephemeral", suite, calls, eph_env, data, stub))
            print(f"  plumbline run, ephemeral {i + 1}: {runs[-1].wall_s:.2f} s, "
                  f"x{runs[-1].ratio():.2f}", flush=True)
        eph = median_run(runs)
        lines.append(row("`plumbline run`, as typed, ephemeral Prefect API", calls, eph.wall_s,
                         eph.cpu_s))
        diag = cli_run("ephemeral, one shard", suite, calls, eph_env, data, stub,
                       extra=("--shard-size", "1000"))
        lines.append(row("diagnostic: same, `--shard-size 1000`", calls, diag.wall_s,
                         diag.cpu_s))
        print(f"  diagnostic, ephemeral, --shard-size 1000: {diag.wall_s:.2f} s, "
              f"x{diag.ratio():.2f}", flush=True)

        big_run, big_note = None, "skipped"
        if big:
            big_suite = write_suite(tmp / "paris-big", big_calls)
            try:
                big_run = cli_run("big", big_suite, big_calls, env, data, stub,
                                  server_pid=server.pid, limit_s=big_limit_s)
            except TimedOut:
                big_note = f"timeout_{big_limit_s:.0f}s"
                lines.append(f"| `plumbline run`, as typed, against a Prefect server | "
                             f"{big_calls} | > {big_limit_s:.0f} s (stopped) | "
                             f"> {big_limit_s / (big_calls * LATENCY_S / CONCURRENCY):.1f} "
                             "| - | - |")
            else:
                lines.append(row("`plumbline run`, as typed, against a Prefect server",
                                 big_calls, big_run.wall_s, big_run.cpu_s,
                                 big_run.server_cpu_s))
            print(f"  plumbline run, {big_calls} calls, server: "
                  f"{f'{big_run.wall_s:.2f} s, x{big_run.ratio():.2f}' if big_run else big_note}",
                  flush=True)

    print("\n".join(lines))
    cpu_ms = srv.cpu_s * 1000 / calls
    verdicts = {"server": srv.ratio() <= TARGETS["server"],
                "ephemeral": eph.ratio() <= TARGETS["ephemeral"],
                "cpu_ms_per_call": cpu_ms <= TARGETS["cpu_ms_per_call"]}
    if big:
        verdicts["big"] = big_run is not None and big_run.ratio() <= TARGETS["big"]
    print("targets: " + ", ".join(f"{k} <= {TARGETS[k]} {'PASS' if ok else 'FAIL'}"
                                  for k, ok in verdicts.items()))
    big_ratio = f"{big_run.ratio():.3f}" if big_run is not None else big_note
    print(f"RESULT calls={calls} floor_ratio={floor.ratio():.3f} server_ratio={srv.ratio():.3f} "
          f"ephemeral_ratio={eph.ratio():.3f} big_ratio={big_ratio} cpu_ms_per_call={cpu_ms:.3f}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
