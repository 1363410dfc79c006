"""The opt-in response cache: reuse a successful answer for the same call, never merge repeats.

Keyed by (model, input messages, sampling parameters, sample index; an image by the sha256 of its
bytes): sample 3 of a case is its own entry, so n samples stay n independent answers, and a
different temperature, seed, max_tokens or image is a different call. Only successful
completions are stored. Entries live in the object store (``cache/responses/``), so every worker
of a scaled-out deployment shares them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from dataclasses import asdict
from typing import Any

from tasks.errors import StorageError
from tasks.providers.base import Completion, CompletionRequest
from tasks.storage.base import ObjectStore
from tasks.storage.layout import response_cache_key

# Bump when the key's ingredients change, so old entries are simply never found.
CACHE_VERSION = 1


def cache_key(model_id: str, request: CompletionRequest) -> str:
    """The entry's object key: a hash of everything that can change the answer."""
    material: dict[str, Any] = {
        "v": CACHE_VERSION,
        "model": model_id,
        "messages": _key_messages(request.messages),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "sample_idx": request.sample_idx,
        "extra": request.extra,
    }
    if request.as_of is not None:
        # Only the offline fake models answer by date; for them the day is part of the call.
        material["as_of"] = request.as_of.date().isoformat()
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()
    return response_cache_key(digest)


def _key_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each image's base64 replaced by the sha256 of its bytes (computed once
    when the suite loaded): the key covers the image without hashing megabytes on every call.
    Text-only messages are unchanged, so existing entries keep their keys."""
    if not any(isinstance(m.get("content"), list) for m in messages):
        return messages
    return [{**m, "content": [
        {"type": "image", "media_type": p.get("media_type"),
         "sha256": p.get("sha256") or hashlib.sha256(base64.b64decode(p["data"])).hexdigest()}
        if p.get("type") == "image" else p for p in m["content"]]}
        if isinstance(m.get("content"), list) else m for m in messages]


class ResponseCache:
    """Get/put completions in the object store without blocking the event loop."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.hits = 0
        self.misses = 0

    async def get(self, model_id: str, request: CompletionRequest) -> Completion | None:
        key = cache_key(model_id, request)
        try:
            data = await asyncio.to_thread(self.store.get, key)
        except KeyError:
            self.misses += 1
            return None
        try:
            fields = json.loads(data)
            completion = Completion(**{k: fields[k] for k in _STORED if k in fields})
        except (ValueError, TypeError):
            self.misses += 1  # a damaged entry is a miss; the fresh answer overwrites it
            return None
        self.hits += 1
        # The answer's tokens and latency are the original call's; this call cost nothing.
        return Completion(**{**asdict(completion), "cost_usd": 0.0, "cached": True,
                             "attempts": 0})

    async def put(self, model_id: str, request: CompletionRequest,
                  completion: Completion) -> None:
        if not completion.ok or completion.cached:
            return
        body = json.dumps({k: getattr(completion, k) for k in _STORED}).encode()
        # The cache is an optimisation: a failed write must not fail the call.
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(self.store.put, cache_key(model_id, request), body)


_STORED = ("text", "finish_reason", "input_tokens", "output_tokens", "latency_ms", "cost_usd")
