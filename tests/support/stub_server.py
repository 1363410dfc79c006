"""A local HTTP server speaking the OpenAI Chat Completions and Anthropic Messages wire formats,
and a custom JSON API of its own (``POST .../rag``) for the ``http/<name>`` targets.

For tests, the throughput benchmark and offline trials of the real provider code (the real
SDKs, the real HTTP stack, no network). Plain asyncio, HTTP/1.1 with keep-alive, no
dependencies. It answers every request after ``latency_s``; a ``fault`` hook can make any
request fail (a status with headers, a broken body, or no answer at all).

    python -m tests.support.stub_server --port 8081 --latency-ms 100
    OPENAI_COMPATIBLE_BASE_URL=http://127.0.0.1:8081/v1 plumbline run --models openai-compatible/m
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What a fault hook returns instead of the normal answer.

    ``hang`` keeps the connection open without answering (the client times out); ``drop``
    closes it without answering (the client sees the server disconnect).
    """

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    drop: bool = False


# (path, parsed JSON body or None, 1-based request number) -> a Reply to send, or None.
FaultHook = Callable[[str, Any, int], Reply | None]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 529: "Overloaded"}


def answer_text(body: Any) -> str:
    """The stub's deterministic answer: it repeats the last user message (or the question)."""
    try:
        content = body["question"] if "question" in body else body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        content = ""
    if isinstance(content, list):  # Anthropic content blocks
        content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return f"You said: {content}"


def openai_body(body: Any, text: str) -> dict[str, Any]:
    prompt = len(json.dumps(body.get("messages", ""))) // 4 if isinstance(body, dict) else 0
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "stub") if isinstance(body, dict) else "stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                  "total_tokens": prompt + len(text.split())},
    }


def anthropic_body(body: Any, text: str) -> dict[str, Any]:
    prompt = len(json.dumps(body.get("messages", ""))) // 4 if isinstance(body, dict) else 0
    return {
        "id": "msg_stub", "type": "message", "role": "assistant",
        "model": body.get("model", "stub") if isinstance(body, dict) else "stub",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": len(text.split())},
    }


def rag_body(body: Any, text: str) -> dict[str, Any]:
    """A custom shape, like a team's own RAG service: nothing an SDK would recognise."""
    prompt = len(json.dumps(body)) // 4 if body is not None else 0
    return {"data": {"answer": {"text": text, "sources": ["doc-1"]}},
            "meta": {"tokens": {"prompt": prompt, "completion": len(text.split())}}}


class StubLLMServer:
    """Serve on 127.0.0.1 (a free port unless given) in a background thread or the caller's loop.

    ``requests`` counts every request received; ``log`` keeps (path, headers, body) of each when
    ``keep_log`` is set (tests read what the SDK really sent).
    """

    def __init__(self, latency_s: float = 0.0, fault: FaultHook | None = None,
                 port: int = 0, keep_log: bool = False) -> None:
        self.latency_s = latency_s
        self.fault = fault
        self.port = port
        self.keep_log = keep_log
        self.requests = 0
        self.log: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hung: list[asyncio.StreamWriter] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._hung:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # --- thread mode ----------------------------------------------------------------------

    def __enter__(self) -> StubLLMServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="stub-llm-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub LLM server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # --- HTTP -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._respond(path, headers, raw, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            if writer not in self._hung:
                writer.close()

    async def _respond(self, path: str, headers: dict[str, str], raw: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        with self._lock:
            self.requests += 1
            number = self.requests
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.keep_log:
            self.log.append((path, headers, body))
        reply = self.fault(path, body, number) if self.fault else None
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if reply is not None and reply.hang:
            self._hung.append(writer)
            return False
        if reply is not None and reply.drop:
            return False  # _handle closes the connection
        if reply is None:
            reply = self._answer(path, body)
        payload = reply.body if reply.body is not None else b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        writer.write(
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            f"{extra}\r\n".encode("latin-1") + payload
        )
        await writer.drain()
        return True

    def _answer(self, path: str, body: Any) -> Reply:
        text = answer_text(body)
        if path.endswith("/chat/completions"):
            return Reply(200, json.dumps(openai_body(body, text)).encode())
        if path.endswith("/messages"):
            return Reply(200, json.dumps(anthropic_body(body, text)).encode())
        if path.split("?")[0].endswith("/rag"):
            return Reply(200, json.dumps(rag_body(body, text)).encode())
        return Reply(404, b'{"error": {"message": "no such endpoint", "type": "not_found"}}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    async def run() -> None:
        server = StubLLMServer(latency_s=args.latency_ms / 1000, port=args.port)
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


if __name__ == "__main__":
    main()
