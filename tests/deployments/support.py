"""Child processes for the integration tests: free ports, logs in files, always killed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_env(tmp: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """An environment whose Prefect state (home, SQLite database) lives in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLUMBLINE_"))}
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PLUMBLINE_STORAGE": "local",
        "PLUMBLINE_DATA_DIR": str(tmp / "data"),
        # The project importable from any working directory, installed or not.
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


class Proc:
    """A child in its own session, its output in a log file, stopped with its whole group."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._fh = self.log.open("wb")
        self.popen = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=self._fh,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_alive(self) -> bool:
        self.popen.poll()
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, grace: float = 20.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._fh.close()


def prefect(*args: str, env: Mapping[str, str], timeout: float = 120) -> str:
    """Run a Prefect CLI command to completion; its output, or an assertion with the output."""
    res = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], env=dict(env),
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"prefect {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def wait_until(ready: Callable[[], bool], what: str, timeout: float,
               watch: Sequence[Proc] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in watch:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited while waiting for {what}:\n"
                                     f"{proc.tail()}")
        if ready():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}:\n{p.tail()}" for p in watch)
    raise AssertionError(f"{what} not ready within {timeout:.0f} s\n{logs}")
