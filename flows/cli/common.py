"""What several commands share: the ``--verbose``, ``--host`` and ``--port`` options, quieting
Prefect's logs for commands that run flows in this process, and finding the Prefect API they
report to (a configured server when it answers, else Prefect's ephemeral one)."""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

Verbose = Annotated[
    bool, Parameter(name=["--verbose", "-v"], negative="", help="Show Prefect's own logs.")
]
Host = Annotated[str, Parameter(help="Interface to listen on.")]
Port = Annotated[int, Parameter(help="Port to listen on.")]


def quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's own chatter off the terminal unless ``--verbose`` asks for it."""
    # No internet here or on many servers: Prefect's telemetry would only log errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # The embedded server logs its own shutdown (pending event flushes being cancelled) as
        # errors; they are not the user's problem. --verbose shows them.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


# How long `plumbline run` waits for a configured Prefect server's health check: a server on
# this machine or the network answers in milliseconds; a dead one must not hold up the run.
HEALTH_TIMEOUT_S = 1.5
START_SERVER_HINT = (
    "start one with `prefect server start` (or `plumbline up`) and "
    "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
)


@dataclass(frozen=True)
class PrefectTarget:
    """The Prefect API a command's flow runs report to, and how the user hears about it.

    ``url`` is None for Prefect's ephemeral API (a temporary server this process starts and
    stops); ``problem`` is set when a server is configured but does not answer.
    """

    url: str | None
    origin: str
    problem: str | None = None

    def line(self) -> str:
        """One line for the terminal saying where the run's flow run goes."""
        if self.url is None:
            return ("Prefect: no server configured, so a temporary local Prefect API runs this "
                    "(seconds to start and stop). For faster runs you can watch in the UI, "
                    f"{START_SERVER_HINT}.")
        return f"Prefect: using the server at {self.url} ({self.origin}); the run is in its UI."


def prefect_target(timeout_s: float = HEALTH_TIMEOUT_S) -> PrefectTarget:
    """The server ``PREFECT_API_URL`` or the active Prefect profile names, health-checked.

    Prefect itself reads the same setting: with no URL it starts its ephemeral API; with a URL
    it uses that server and, when the server is down, retries for a long while before failing.
    The probe answers that question first, in at most ``timeout_s``.
    """
    from prefect.context import get_settings_context
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return PrefectTarget(None, "ephemeral")
    origin = ("PREFECT_API_URL" if os.environ.get("PREFECT_API_URL")
              else f"Prefect profile '{get_settings_context().profile.name}'")
    problem = probe_health(url, timeout_s)
    return PrefectTarget(url, origin, problem)


def probe_health(url: str, timeout_s: float) -> str | None:
    """Why the Prefect API at ``url`` is not usable, or None when ``/health`` answers 200."""
    request = urllib.request.Request(url.rstrip("/") + "/health")
    key = os.environ.get("PREFECT_API_KEY")
    if key:  # Prefect Cloud checks it
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, no such host, a malformed URL
        reason = getattr(exc, "reason", None) or exc
        return f"no answer within {timeout_s:g} s ({reason})"
    return None if status == 200 else f"its /health answered HTTP {status}"



class EphemeralServer:
    """Prefect's temporary API server for one command, started the way Prefect starts it.

    Prefect starts the same server (uvicorn on ``prefect.server.api.server:create_app``, UI
    off, in a subprocess) when a flow runs with no ``PREFECT_API_URL``; but first it imports
    its whole server package into the calling process (FastAPI, SQLAlchemy, the API: about 2 s
    of CPU) only to launch a subprocess that imports it again. Started from here (standard
    library only), the command pays for neither, and can start it before importing Prefect, so
    the server's start-up overlaps the command's own imports.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def spawn(self, verbose: bool = False) -> EphemeralServer:
        """Start the server process (without waiting for it); it stops when this process exits.

        Its settings come from the same environment and Prefect profile as this process's.
        """
        spec = importlib.util.find_spec("prefect")  # found, not imported
        app_dir = Path(spec.origin).parent.parent if spec and spec.origin else Path()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        quiet = None if verbose else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet,
        )
        # Registered before the run's log and event workers register theirs: atexit runs in
        # reverse order, so they send what is left to the server before it stops.
        atexit.register(self.stop)
        _spawned.append(self)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> str | None:
        """Wait until the server answers its health check; what went wrong, or None."""
        deadline = time.monotonic() + timeout_s
        while probe_health(self.api_url, 1.0) is not None:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process else None
                return f"exited with status {code} before answering"
            if time.monotonic() > deadline:
                self.stop()
                return f"did not answer within {timeout_s:g} s"
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        """Stop the server as Prefect does: terminate, then kill after 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def names_a_server(env: Mapping[str, str] = os.environ) -> bool:
    """A quick guess, without importing Prefect, at whether its settings name a server:
    ``PREFECT_API_URL`` in the environment, or in the active profile of the profiles file.

    Only a guess (Prefect also reads ``prefect.toml``, ``.env`` and ``pyproject.toml``):
    ``prefect_target`` decides, after Prefect is imported, and a wrong guess costs an early
    server that is stopped unused.
    """
    if env.get("PREFECT_API_URL"):
        return True
    home = Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    active = env.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = data.get("profiles", {}).get(active, {})
    return isinstance(profile, dict) and bool(profile.get("PREFECT_API_URL"))


_early: list[EphemeralServer] = []
# Every server this process started, for ``stop_servers``.
_spawned: list[EphemeralServer] = []


def stop_servers() -> None:
    """Stop every temporary API server this process started (a caller of ``main`` that goes on
    living, e.g. a test, must not collect one per run until it exits)."""
    _early.clear()
    while _spawned:
        _spawned.pop().stop()


def start_early(tokens: Sequence[str]) -> None:
    """For ``plumbline run`` with no server named: start Prefect's temporary API server now,
    before the command imports Prefect (1-2 s), so that its own start-up (seconds) overlaps."""
    if "--help" in tokens or "-h" in tokens:
        return
    if "--ephemeral" in tokens or not names_a_server():
        _early.append(EphemeralServer().spawn(verbose="--verbose" in tokens or "-v" in tokens))


def take_early_server() -> EphemeralServer | None:
    """The server ``start_early`` started, if any (handed over once)."""
    return _early.pop() if _early else None


def pause_gc() -> None:
    """No garbage collection while a command's modules import (``resume_gc`` ends it).

    Importing Prefect, pydantic's models and the flow's modules creates some hundred thousand
    objects, none of them garbage; the collector's passes over them cost ~10 % of ``plumbline
    run``'s start-up (measured when PyArrow was a start-up import too).
    """
    gc.disable()


def resume_gc() -> None:
    """After ``pause_gc``: what was imported moves to the permanent generation (never scanned
    again), and collection resumes for what the command allocates. A no-op otherwise."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def prefetch(*modules: str) -> threading.Thread:
    """Import ``modules`` in a background thread, while this one mostly waits on the network.

    ``plumbline run`` starts it before its flow run: creating the flow run and setting its state
    are round trips to the Prefect API, and the run's HTTP stack (aiohttp, ~0.1 s to import)
    then loads in those waits instead of after them. An import that fails here is left alone:
    the code that needs the module imports it again and reports the error where it belongs.
    """
    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # reported by the real import, see above
                return

    thread = threading.Thread(target=load, name="plumbline-prefetch", daemon=True)
    thread.start()
    return thread


class FastExit:
    """End the process as soon as its exit handlers have run, without the interpreter's teardown.

    After ``plumbline run`` has printed its summary, Python's own shutdown (freeing every object
    of Prefect, pydantic and Arrow, module by module) cost 0.5 s of CPU and more than a second of
    wall time on a busy machine when measured (a run then held Polars too), for nothing anyone
    sees. ``arm`` registers a handler
    to run after every other exit handler (atexit runs them in reverse order of registration):
    Prefect's log and event workers have sent what they hold and the temporary API server has
    stopped by then; this flushes the standard streams and logging, then leaves with ``status``.
    With ``status`` unset (the command did not return: an uncaught exception), the interpreter
    exits normally.
    """

    def __init__(self) -> None:
        self.status: int | None = None

    def arm(self) -> FastExit:
        atexit.register(self._exit)
        return self

    def _exit(self) -> None:
        if self.status is None:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            # A closed pipe: nothing more can reach it.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(self.status)
