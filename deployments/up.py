"""``plumbline up``: Prefect's server and UI, the served flows and the Plumbline API, together.

Three child processes, each in its own session so that one signal to its process group reaches
the grandchildren too (Prefect's server runs uvicorn below itself; the runner runs each flow in a
subprocess). They start in dependency order (the server first; the served flows need its API)
and stop in reverse, so the runner can still cancel its runs in flight and pause its deployments
while the server is up. If any child dies, the others are stopped too: a half-running stack is
worse than a stopped one.

``up`` owns its server and is the only one running its deployments, so a run of them still
Pending, Running or Cancelling when ``up`` starts, or after its served flows stopped, has no
process: it is marked Crashed (``deployments.liveness.crash_orphans``), which frees its
concurrency slot. "Plumbline is up" is printed once the schedules are live: every deployment
registered and not paused, and each cron deployment's next runs scheduled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx
from prefect.client.orchestration import SyncPrefectClient

from deployments.liveness import crash_orphans
from deployments.specs import SPECS, TIMEZONE
from tasks.errors import UpError

STOP_GRACE_SECONDS = 20.0
# The served flows get longer: Prefect's runner gives each run in flight 30 s to end after it
# asks it to cancel, before it kills it.
SERVE_STOP_GRACE_SECONDS = 40.0
CRASHED_AT_START = (
    "`plumbline up` found this run in flight when it started: the previous `plumbline up` "
    "ended (killed, or its machine stopped) while it ran, and its process is gone. Marked "
    "Crashed so that it does not hold a concurrency slot; re-run it to finish its work."
)
CRASHED_AT_STOP = (
    "`plumbline up` stopped while this run was in flight, and its process did not end it. "
    "Marked Crashed so that it does not hold a concurrency slot; re-run it to finish its work."
)


class _Stop(Exception):
    """SIGTERM, turned into an exception so the same ``finally`` stops the children."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    grace: float = STOP_GRACE_SECONDS

    def start(self) -> None:
        # A new session: the child's process group is its own, so Ctrl-C in the terminal reaches
        # only this supervisor, which then stops each child (and everything below it) in order.
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM to the child, then to what is left of its process group, then SIGKILL.

        The child is asked first, alone: the served flows' runner then cancels its runs in
        flight through Prefect (their state says so) before it exits. A SIGTERM to the whole
        group at once would reach the flow runs' processes first and kill them unreported.
        """
        if self.proc is None:
            return
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(self.proc.pid, signal.SIGTERM)
        # Wait for the whole group, not only the child: a grandchild (a flow run's subprocess,
        # the server's uvicorn) can outlive its parent. Leftovers get a moment even when the
        # child used up the grace.
        deadline = max(deadline, time.monotonic() + 2.0)
        while time.monotonic() < deadline:
            self.proc.poll()  # reap, or the zombie keeps the group alive
            if not _group_alive(self.proc.pid):
                break
            time.sleep(0.1)
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # SIGKILL is delivered at once but processed asynchronously; return once it has been.
        deadline = time.monotonic() + 5
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_port_free(host: str, port: int, what: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UpError(f"port {port} on {host} is in use ({exc.strerror}); {what} needs it: "
                          f"stop what holds it or pick another with {flag}") from exc


@dataclass
class Stack:
    """The three children of ``plumbline up`` and how to wait for each to be ready."""

    host: str = "127.0.0.1"
    prefect_port: int = 4200
    api_port: int = 8000
    verbose: bool = False
    startup_timeout: float = 180.0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)

    @property
    def prefect_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # Every child talks to this stack's server, whatever the user's Prefect profile says.
        env["PREFECT_API_URL"] = f"{self.prefect_url}/api"
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.update(extra or {})
        return env

    def _say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def start(self) -> None:
        check_port_free(self.host, self.prefect_port, "the Prefect server", "--prefect-port")
        check_port_free(self.host, self.api_port, "the Plumbline API", "--api-port")
        quiet = {} if self.verbose else {"PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
        server = Child("prefect-server", [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", self.host, "--port", str(self.prefect_port),
        ], self._env(quiet))  # the UI calls PREFECT_API_URL unless PREFECT_UI_API_URL is set
        api = Child("api", [sys.executable, "-m", "flows.cli", "api", "--host", self.host,
                            "--port", str(self.api_port)], self._env())
        serve = Child("serve", [sys.executable, "-m", "flows.cli", "serve"], self._env())
        self._say(f"Starting the Prefect server and UI on {self.prefect_url} and the Plumbline "
                  f"API on {self.api_url} ...")
        self._launch(server)
        self._launch(api)  # needs no Prefect: starts while the server does
        self._wait("the Prefect server", [server, api],
                   lambda: _answers(f"{self.prefect_url}/api/health", ok=(200,)))
        # Before anything can run: what a previous `up` left in flight has no process now.
        self._crash_orphans(CRASHED_AT_START)
        self._say("Serving the flows ...")
        # Launched last, stopped first: it cancels its runs and pauses its deployments on the
        # way out, which needs the server still up.
        serve.grace = SERVE_STOP_GRACE_SECONDS
        since = datetime.now(UTC)
        self._launch(serve)
        self._wait("the served deployments and their schedules", [server, serve],
                   lambda: _schedules_live(self.prefect_url, since))
        # /api/health answers 503 when storage is unreachable: still up, and it says why.
        self._wait("the Plumbline API", [api],
                   lambda: _answers(f"{self.api_url}/api/health", ok=(200, 503)))

    def _launch(self, child: Child) -> None:
        child.start()
        self.children.append(child)

    def _wait(self, what: str, watch: list[Child], ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            for child in watch:
                code = child.exited()
                if code is not None:
                    raise UpError(f"{child.name} exited with code {code} while waiting for "
                                  f"{what} (its output is above)")
            if ready():
                return
            time.sleep(0.5)
        raise UpError(f"{what} did not come up within {self.startup_timeout:.0f} s")

    def banner(self) -> str:
        lines = [
            "Plumbline is up:",
            f"  Prefect UI     {self.prefect_url}",
            f"  Prefect API    {self.prefect_url}/api",
            f"  Plumbline API  {self.api_url}  (/api/health, /api/data/chart, /docs)",
            "  Deployments:",
        ]
        for spec in SPECS:
            when = f"cron {spec.cron} {TIMEZONE}" if spec.cron else "on demand"
            lines.append(f"    {spec.name:<14} {when}")
        lines.append("  pids: " + " ".join(f"{c.name}={c.pid}" for c in self.children))
        lines.append("Press Ctrl-C to stop everything.")
        return "\n".join(lines)

    def supervise(self, poll: float = 0.5) -> int:
        """Block until a child exits (then return 1); signals end it through exceptions."""
        while True:
            for child in self.children:
                code = child.exited()
                if code is not None:
                    self._say(f"plumbline up: {child.name} exited with code {code}; "
                              "stopping the rest")
                    return 1
            time.sleep(poll)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
            if child.name == "serve" and any(c.name == "prefect-server" and c.exited() is None
                                             for c in self.children):
                # The runner cancelled what it could; what is still in flight has no process.
                self._crash_orphans(CRASHED_AT_STOP)
        self.children.clear()

    def _crash_orphans(self, message: str) -> None:
        """Mark our deployments' runs left in flight Crashed; never stops ``up`` itself."""
        try:
            with SyncPrefectClient(f"{self.prefect_url}/api") as client:
                runs = crash_orphans(client, [s.name for s in SPECS], message)
        except Exception as exc:  # a server that is going down: the next start does it
            self._say(f"plumbline up: could not look for interrupted runs: {exc}")
            return
        if runs:
            names = ", ".join(f"{r.name!r}" for r in runs)
            self._say(f"Marked {len(runs)} interrupted flow run(s) Crashed: {names}")


def _answers(url: str, ok: tuple[int, ...]) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code in ok
    except httpx.HTTPError:
        return False


def _post(url: str, body: dict[str, Any]) -> Any:
    try:
        resp = httpx.post(url, json=body, timeout=5.0)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _schedules_live(prefect_url: str, since: datetime) -> bool:
    """Every deployment registered and not paused, and each cron one has runs scheduled after
    ``since`` (registering a deployment deletes its old scheduled runs; Prefect's scheduler
    then makes new ones: until it has, nothing would run at the next cron time)."""
    found = _post(f"{prefect_url}/api/deployments/filter", {})
    if found is None:
        return False
    ours = {d["name"]: d for d in found if d["name"] in {s.name for s in SPECS}}
    if len(ours) < len(SPECS) or any(d["paused"] for d in ours.values()):
        return False
    crons = {ours[s.name]["id"] for s in SPECS if s.cron}
    runs = _post(f"{prefect_url}/api/flow_runs/filter", {"flow_runs": {
        "deployment_id": {"any_": sorted(crons)},
        "state": {"type": {"any_": ["SCHEDULED"]}},
    }})
    if runs is None:
        return False
    fresh = {r["deployment_id"] for r in runs if datetime.fromisoformat(r["created"]) >= since}
    return fresh >= crons


def run_up(stack: Stack) -> int:
    """Start the stack, wait for Ctrl-C, SIGTERM or a dead child, and stop all of it."""

    def on_term(signum: int, frame: object) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        stack.start()
        print(stack.banner(), file=stack.out, flush=True)
        code = stack.supervise()
    except (KeyboardInterrupt, _Stop):
        code = 0
    finally:
        # Ignore a second Ctrl-C while stopping: it would leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping ...", file=stack.out, flush=True)
        stack.stop()
        print("Stopped.", file=stack.out, flush=True)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return code
