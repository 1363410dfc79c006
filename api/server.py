"""The uvicorn server for the API, configured from ``Settings``: the one place its trust and size
limits are set, used by ``plumbline api``, ``plumbline demo`` and the real-server tests.

uvicorn's defaults are not safe for us: it believes ``X-Forwarded-For`` from 127.0.0.1 (so on the
embedded single-host setup any local client could pick its rate-limit bucket), and its httptools
protocol (the one ``uvicorn[standard]`` picks) buffers a request head of any size: four 50 MB
headers took the server from 247 to 512 MB. Here proxy headers are believed only from
``TRUSTED_PROXIES``, and the HTTP protocol is chosen explicitly with a cap on the head it buffers.

Several worker processes (``serve(..., workers=N)``, ``plumbline api --workers N``) share one
listening socket under uvicorn's supervisor, which restarts a worker that dies. uvicorn starts a
worker by importing its app by name, so each worker builds its own app with ``app_factory`` from
the environment's settings. They share the spool (SQLite; flushes and GDPR operations take a lock
file) and the rate-limit counts (``api/limits.py``), so neither the limit nor dedupe multiplies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from api.app import create_app
from api.metrics import MULTIPROC_ENV
from tasks.settings import Settings, get_settings

log = logging.getLogger("uvicorn.error")

# What each worker process imports to build its app (uvicorn can only start workers from a name).
APP_FACTORY = "api.server:app_factory"

# Seconds an idle keep-alive connection is held (uvicorn's default, stated so it cannot drift).
KEEP_ALIVE_S = 5
# On SIGTERM, requests in flight get this long before they are cancelled; the lifespan shutdown
# (the spool's final flush) runs after it either way, and nothing acknowledged is lost.
GRACEFUL_SHUTDOWN_S = 15


def parser_limit(settings: Settings) -> int:
    """Bytes of a request head (request line and headers) the HTTP parser buffers at most.

    Twice the app's ``MAX_HEADER_BYTES`` (plus room for a long request line): a head somewhat
    over the limit reaches the app and gets a 431 that names the limit, while anything larger is
    cut off while it arrives (431, connection closed) before it is held in memory.
    """
    return 2 * settings.max_header_bytes + 8 * 1024


def _refuse_head(transport: asyncio.Transport, limit: int) -> None:
    body = json.dumps({"detail": f"request head exceeds {limit} bytes"}).encode()
    transport.write(
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )
    transport.close()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with h11's guard: a connection whose request head grows past
    ``config.h11_max_incomplete_event_size`` bytes gets a 431 and is closed.

    httptools accumulates a header value internally until its line ends, so the bytes are counted
    here as they arrive: every chunk fed while the head is still incomplete. The chunk in which a
    message begins is not counted (it may carry the end of the previous one), so at most the
    limit plus one read (256 KiB) is ever buffered per connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_limit: int = self.config.h11_max_incomplete_event_size or 16 * 1024
        self.head_bytes = 0
        self.in_head = False
        self.began_in_chunk = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.began_in_chunk = True
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        self.in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        self.began_in_chunk = False
        super().data_received(data)
        if not self.in_head or self.began_in_chunk or self.transport.is_closing():
            return
        self.head_bytes += len(data)
        if self.head_bytes > self.head_limit:
            self.logger.warning("request head over %d bytes from %s: refused",
                                self.head_limit, self.client)
            self.in_head = False
            _refuse_head(self.transport, self.head_limit)


def app_factory() -> FastAPI:
    """The app a worker process serves: ``create_app`` with the environment's settings.

    A failure here exits with uvicorn's startup-failure status, so the supervisor stops instead
    of restarting the worker forever (uvicorn itself only treats a ``TypeError`` that way).
    """
    try:
        return create_app(get_settings())
    except Exception as exc:
        log.error("the API worker cannot start: %s: %s", type(exc).__name__, exc)
        raise SystemExit(STARTUP_FAILURE) from exc


def build_config(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
                 app: Any = None, workers: int = 1, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn ``Config`` for ``app``: an ASGI app, or the import name of a factory (needed,
    and by default ``APP_FACTORY``, when ``workers`` > 1)."""
    if app is None:
        app = APP_FACTORY if workers > 1 else create_app(settings)
    if workers > 1 and not isinstance(app, str):
        raise ValueError("several workers need the app as an import name, e.g. " + APP_FACTORY)
    trusted = list(settings.trusted_proxies)
    return uvicorn.Config(
        app, factory=isinstance(app, str),
        host=host, port=port, log_level=log_level,
        # Never "auto" (plain httptools, unbounded): httptools with the cap h11 has; h11 itself
        # would do, but serves ~40 % fewer requests per second here (docs/benchmarks.md).
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=parser_limit(settings),
        # The API serves no websockets: no upgrade handling to attack.
        ws="none",
        # "on", not "auto": the lifespan replays the spool at start; a failure there must stop
        # the server rather than let it serve without it.
        lifespan="on",
        # X-Forwarded-For/-Proto are believed only from the configured proxies, never from
        # uvicorn's default of 127.0.0.1 (nor from FORWARDED_ALLOW_IPS in the environment).
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
        # Always explicit, so WEB_CONCURRENCY in the environment is never read: the number of
        # processes is ours to choose (--workers / API_WORKERS).
        workers=workers,
        limit_concurrency=settings.api_max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


def build_server(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
                 app: Any = None, log_level: str = "info") -> uvicorn.Server:
    """A one-process uvicorn ``Server`` for ``app`` (by default ``create_app(settings)``);
    ``.run()`` it. For several processes use ``serve``."""
    return uvicorn.Server(build_config(settings, host=host, port=port, app=app,
                                       log_level=log_level))


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          app: Any = None, log_level: str = "info") -> int:
    """Serve until SIGINT/SIGTERM, in ``workers`` processes; return the exit status (3 if the
    server, or a worker, could not start).

    With several workers each builds its app from the environment's settings (``app_factory``,
    or ``app``'s import name): ``settings`` configures the server (host, limits, proxies) only.
    """
    if workers <= 1:
        server = build_server(settings, host=host, port=port, app=app, log_level=log_level)
        server.run()
        # As uvicorn.run does: a failed startup (port in use, lifespan error) is exit status 3.
        return 0 if server.started else STARTUP_FAILURE
    # /metrics must count every worker's requests, whichever worker a scrape reaches:
    # prometheus-client's multiprocess mode, in a folder of this server's own unless the operator
    # chose one (it must start empty, so it is made new for each start).
    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="plumbline-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    config = build_config(settings, host=host, port=port, app=app, workers=workers,
                          log_level=log_level)
    # Bound once here and inherited by every worker; on SIGTERM the supervisor stops the workers,
    # each finishing its requests and flushing the spool, before it exits.
    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m api.server --host H --port P [--workers N]``: serve with the environment's
    settings."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m api.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=settings.api_workers)
    args = parser.parse_args(argv)
    return serve(settings, host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
