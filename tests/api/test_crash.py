"""SIGKILL the real server while it acknowledges submissions: after a restart every acknowledged
submission is in the store exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from api.spool import Spool
from tasks.records.io import parquet_to_table
from tasks.storage.local import LocalStore
from tests.api.conftest import pramana_payload
from tests.api.uvicorn_server import Server

WORKERS = 8
KILL_AFTER = 150


def _stored_ids(store: LocalStore) -> Counter[str]:
    ids: Counter[str] = Counter()
    for info in store.list("raw/"):
        ids.update(parquet_to_table(store.get(info.key)).column("id").to_pylist())
    return ids


def test_sigkill_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    data, spool = tmp_path / "data", tmp_path / "spool"
    env = {
        "PLUMBLINE_DATA_DIR": str(data), "PLUMBLINE_SPOOL_DIR": str(spool),
        "PLUMBLINE_STORAGE": "local", "RATE_LIMIT_PER_MINUTE": "0",
        # Flush often and in small batches, so the kill is likely to land mid-flush too.
        "SPOOL_FLUSH_SECONDS": "0.05", "SPOOL_FLUSH_ROWS": "20",
    }
    log = tmp_path / "server.log"
    server = Server(env, log)
    acked: dict[str, dict[str, object]] = {}  # id -> payload
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                body = pramana_payload(prompt_id=f"w{n}-{i}", output=f"answer {n}/{i}")
                i += 1
                try:
                    r = client.post("/api/submit", json=body)
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 200 and r.json()["status"] == "accepted":
                    with lock:
                        acked[r.json()["id"]] = body

    try:
        server.wait_ready()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) >= KILL_AFTER
        left = Spool(spool)
        pending_at_kill = left.pending_count()
        left.close()
        flushed_at_kill = sum(_stored_ids(LocalStore(data)).values())
        print(f"acknowledged {len(acked)}; at the kill {flushed_at_kill} flushed, "
              f"{pending_at_kill} spooled")

        restarted = Server(env, log)
        try:
            restarted.wait_ready()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                health = httpx.get(restarted.url + "/api/health").json()
                if health["pending_submissions"] == 0:
                    break
                time.sleep(0.1)
            assert health["pending_submissions"] == 0, health
            # The dedupe memory survived the kill as well.
            some_id, some_body = next(iter(acked.items()))
            again = httpx.post(restarted.url + "/api/submit", json=some_body).json()
            assert again == {**again, "status": "duplicate", "id": some_id}
        finally:
            restarted.stop()
    finally:
        if server.proc.poll() is None:
            server.kill()

    stored = _stored_ids(LocalStore(data))
    missing = [i for i in acked if stored[i] != 1]
    assert not missing, f"{len(missing)} acknowledged submission(s) not stored exactly once"
    assert max(stored.values()) == 1  # nothing, acknowledged or not, is stored twice
