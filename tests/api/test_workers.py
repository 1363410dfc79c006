"""``plumbline api --workers 2`` as a real subprocess (issue 14): two uvicorn worker processes on
one port share the per-IP rate limit and the dedupe keys, flush the spool between them without
storing anything twice, honour a GDPR delete made on either, and a worker that cannot start stops
the server instead of looping.

Which process answers a connection is read from /proc (the kernel hands each accepted connection
to one worker): a test opens connections until it holds one to each worker, then sends its
requests alternately over them.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.records.io import parquet_to_table
from tasks.storage.local import LocalStore
from tests.api.conftest import SECRET, USER_B, make_token, pramana_payload
from tests.api.uvicorn_server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


@dataclass
class Workers:
    """A running ``plumbline api --workers 2`` and the ids it acknowledged as accepted."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path
    accepted: list[str] = field(default_factory=list)

    def pids(self) -> set[int]:
        """The worker processes: children of the supervisor started by multiprocessing's spawn
        (not its resource tracker)."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid and b"spawn_main" in cmdline:
                found.add(int(entry.name))
        return found

    def owner(self, conn: http.client.HTTPConnection, pids: set[int]) -> int | None:
        """The worker holding the server side of ``conn``, once it has accepted it."""
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.rsplit(":", 1)[1], 16) == self.port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port):
                inode = fields[9]
        if inode in (None, "0"):
            return None  # not accepted yet
        target = f"socket:[{inode}]"
        for pid in pids:
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        return None

    def one_connection_per_worker(self, source_ip: str) -> dict[int, http.client.HTTPConnection]:
        """Keep-alive connections from ``source_ip`` (a loopback address), one to each worker."""
        pids = self.pids()
        assert len(pids) == 2, f"expected 2 workers, found {pids}"
        chosen: dict[int, http.client.HTTPConnection] = {}
        extra = []
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                              source_address=(source_ip, 0))
            conn.connect()
            pid = None
            deadline = time.monotonic() + 5
            while pid is None and time.monotonic() < deadline:
                pid = self.owner(conn, pids)
                if pid is None:
                    time.sleep(0.01)
            if pid is not None and pid not in chosen:
                chosen[pid] = conn
                if len(chosen) == len(pids):
                    break
            else:
                extra.append(conn)
        for conn in extra:
            conn.close()
        assert len(chosen) == len(pids), "could not reach both workers"
        return chosen

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _start(tmp_path: Path, **env: str) -> Workers:
    port = free_port()
    log = tmp_path / "server.log"
    full_env = {
        **os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PLUMBLINE_DATA_DIR": str(tmp_path / "data"), "PLUMBLINE_STORAGE": "local",
        "PLUMBLINE_SPOOL_DIR": str(tmp_path / "spool"), "NEXTAUTH_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": "60", **env,
    }
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "api", "--workers", "2", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
        )
    return Workers(proc, port, tmp_path / "data", log)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    server = _start(tmp_path_factory.mktemp("workers"))
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited: {server.log.read_text()[-3000:]}")
            try:
                if (httpx.get(f"http://127.0.0.1:{server.port}/api/health", timeout=2)
                        .status_code == 200 and len(server.pids()) == 2):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready: {server.log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def _post(conn: http.client.HTTPConnection, path: str, body: Any) -> tuple[int, Any, str | None]:
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    return response.status, data, response.getheader("retry-after")


def test_the_per_ip_limit_holds_across_both_worker_processes(workers: Workers) -> None:
    """120 submissions from one IP, alternately to each worker: exactly 60 accepted, then 429s
    (with one limiter per process it was 120: 60 each)."""
    conns = list(workers.one_connection_per_worker("127.0.0.11").items())
    answers = []
    for i in range(120):
        pid, conn = conns[i % 2]
        status, body, retry = _post(conn, "/api/submit", pramana_payload(prompt_id=f"limit-{i}"))
        answers.append((pid, status, body, retry))
        if status == 200:
            workers.accepted.append(body["id"])
    assert [status for _, status, _, _ in answers] == [200] * 60 + [429] * 60
    assert {pid for pid, status, _, _ in answers if status == 200} == {pid for pid, _ in conns}
    assert all(b["status"] == "accepted" for _, s, b, _ in answers if s == 200)
    assert all(1 <= int(retry) <= 60 for _, s, _, retry in answers if s == 429)
    for _, conn in conns:
        conn.close()


def test_the_same_submission_to_both_workers_is_stored_once(workers: Workers) -> None:
    (first_pid, first), (second_pid, second) = workers.one_connection_per_worker(
        "127.0.0.12").items()
    payload = pramana_payload(prompt_id="dedupe-across-workers")
    status, body, _ = _post(first, "/api/submit", payload)
    assert (status, body["status"]) == (200, "accepted")
    workers.accepted.append(body["id"])
    status, again, _ = _post(second, "/api/submit", payload)
    assert (status, again["status"], again["id"]) == (200, "duplicate", body["id"])
    # In a batch too, next to a new result.
    other = pramana_payload(prompt_id="dedupe-across-workers-2")
    status, batch, _ = _post(second, "/api/submit/batch", {"results": [payload, other]})
    assert (status, batch["accepted"], batch["duplicates"]) == (200, 1, 1)
    workers.accepted.append(batch["results"][1]["id"])
    assert first_pid != second_pid
    first.close()
    second.close()


def test_a_delete_on_one_worker_drops_what_the_other_spooled(workers: Workers) -> None:
    """GDPR across processes: the user's unflushed submissions, whichever worker took them, are
    dropped by a delete on one worker (under the spool's lock file, so no worker is flushing
    them meanwhile), and none of them reaches the store afterwards."""
    token = {"Authorization": f"Bearer {make_token(USER_B)}", "Content-Type": "application/json"}
    (_, first), (_, second) = workers.one_connection_per_worker("127.0.0.14").items()
    for n, conn in enumerate((first, second)):
        results = [pramana_payload(prompt_id=f"gdpr-{n}-{i}") for i in range(5)]
        conn.request("POST", "/api/submit/batch", body=json.dumps({"results": results}),
                     headers=token)
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["accepted"]) == (200, 5)
    first.request("DELETE", "/api/user/me", headers=token)
    response = first.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["pending_dropped"] == 10
    first.close()
    second.close()


def test_stopping_flushes_every_acknowledged_submission_once(workers: Workers) -> None:
    """On SIGTERM each worker flushes on its way out; they take turns on the spool's lock."""
    conns = workers.one_connection_per_worker("127.0.0.13")
    for n, conn in enumerate(conns.values()):
        results = [pramana_payload(prompt_id=f"stop-{n}-{i}") for i in range(50)]
        status, batch, _ = _post(conn, "/api/submit/batch", {"results": results})
        assert (status, batch["accepted"]) == (200, 50)
        workers.accepted += [r["id"] for r in batch["results"]]
        conn.close()
    assert workers.stop() == 0
    store = LocalStore(workers.data_dir)
    ids: Counter[str] = Counter()
    for info in store.list("raw/"):
        ids.update(parquet_to_table(store.get(info.key)).column("id").to_pylist())
    assert ids == Counter(dict.fromkeys(workers.accepted, 1))
    assert len(ids) >= 100
    assert not [o.key for o in store.list("raw/") if f"/user={USER_B}/" in o.key]  # deleted


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "spool-is-a-file"
    not_a_folder.write_text("")
    server = _start(tmp_path, PLUMBLINE_SPOOL_DIR=str(not_a_folder))
    try:
        assert server.proc.wait(90) == 3  # uvicorn's startup failure, not an endless restart
    finally:
        server.stop()
    assert "the API worker cannot start" in server.log.read_text()
