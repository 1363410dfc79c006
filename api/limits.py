"""Request limits as plain ASGI middleware (cheap on the hot read path): a request header size
limit, a per-client-IP rate limit and a request body size limit.
The rate limit's counts are shared by every API process on the host (``api/ratelimit.py``).

The client IP is the TCP peer, unless the peer is a configured trusted proxy: then it is the
right-most ``X-Forwarded-For`` address that is not itself a trusted proxy. Anything a client can
write into that header further left is ignored, so a client cannot pick its own bucket.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from api.ratelimit import RateCounter

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[_IPNetwork]:
    """``10.0.0.1`` or ``10.0.0.0/8`` style entries; raises ``ValueError`` naming a bad one."""
    nets = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return nets


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_ip(scope: Scope, trusted: list[_IPNetwork]) -> str:
    peer = scope.get("client")
    peer_ip = peer[0] if peer else "unknown"
    if not trusted:
        return peer_ip
    addr = _ip(peer_ip)
    if addr is None or not any(addr in net for net in trusted):
        return peer_ip
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded.extend(value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # a garbled hop: trust nothing further left
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer_ip


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": data})


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client IP exceeds its requests per minute on ``/api/``.

    With ``state_dir`` (the spool folder) the counts are shared by every process using that
    folder; without it, or while the shared database is unusable, they are this process's own.
    """

    # Health checks come from monitors and load balancers; limiting them only causes false alarms.
    EXEMPT = ("/api/health",)

    def __init__(self, app: ASGIApp, *, per_minute: int, trusted_proxies: list[str],
                 state_dir: Path | None = None) -> None:
        self.app = app
        self.limit = per_minute
        self.counter = RateCounter(per_minute, state_dir)
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or not path.startswith("/api/") or path in self.EXEMPT
                or scope.get("method") == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        wait = await self.counter.hit(client_ip(scope, self.trusted))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            await _send_json(
                send, 429,
                {"detail": f"rate limit exceeded: {self.limit} requests per minute; "
                           f"retry after {retry} s"},
                [(b"retry-after", retry.encode())],
            )
            return
        await self.app(scope, receive, send)


class HeaderLimitMiddleware:
    """431 for a request whose header lines total more than ``max_bytes``.

    The HTTP parser (api/server.py) already stops buffering a head at twice this; the check here
    gives a request over the limit an answer naming it, and holds under any other server too.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        # As on the wire: "name: value\r\n".
        total = sum(len(name) + len(value) + 4 for name, value in headers)
        if total > self.max_bytes:
            largest = max(headers, key=lambda h: len(h[1]))[0].decode("latin-1")
            await _send_json(
                send, 431,
                {"detail": f"request headers total {total} bytes, over the limit of "
                           f"{self.max_bytes} (largest: '{largest}')"},
                [(b"connection", b"close")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, declared or streamed.

    The body is read here in full (it is at most ``max_bytes``) and replayed to the app, so an
    oversized chunked upload is refused before any handler sees a byte of it.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                    return
                if declared > self.max_bytes:
                    await self._too_large(send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, {"detail": f"request body exceeds {self.max_bytes} bytes"})
