"""Image cases on the wire: the real ``openai`` and ``anthropic`` SDK clients send the shipped
vision suite's images in each API's documented format (checked against the SDKs' own request
types), compatible servers get OpenAI's format over a real socket, the fake model answers them,
the response cache tells images apart, and no image byte reaches a stored row."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

from tasks.catalog import load_suite
from tasks.providers.anthropic_provider import anthropic_factory
from tasks.providers.base import CompletionRequest
from tasks.providers.fake import FakeProvider
from tasks.providers.openai_provider import openai_factory
from tasks.providers.registry import ProviderRegistry
from tasks.run.cache import ResponseCache, cache_key
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.storage.local import LocalStore
from tasks.suites.load import SHIPPED_SUITES_DIR
from tasks.suites.model import Case, Suite
from tests.support.helpers import write_suite
from tests.support.images import png_bytes
from tests.support.stub_server import StubLLMServer

VISION = SHIPPED_SUITES_DIR / "vision"
Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture(scope="module")
def vision() -> Suite:
    return load_suite(VISION)


def case(suite: Suite, cid: str) -> Case:
    return next(c for c in suite.cases if c.id == cid)


def request_for(c: Case, **kw: Any) -> CompletionRequest:
    return CompletionRequest(messages=c.messages("Be brief."), max_tokens=32, prompt_id=c.id,
                             **kw)


def file_bytes(name: str) -> bytes:
    return (VISION / "images" / name).read_bytes()


def decode_data_url(url: str) -> tuple[str, bytes]:
    head, _, data = url.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), url[:40]
    return head[5:-7], base64.b64decode(data, validate=True)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def chat_ok(text: str = "blue") -> httpx2.Response:
    return httpx2.Response(200, json={
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 1, "total_tokens": 301}})


def sdk_accepts(adapter: pydantic.TypeAdapter[Any], message: dict[str, Any]) -> None:
    """Validate against the SDK's own request type (its content is a lazy iterable)."""
    checked = adapter.validate_python(message)
    if not isinstance(checked["content"], str):
        list(checked["content"])


def test_openai_sdk_sends_image_url_parts_with_data_urls(vision: Suite) -> None:
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return chat_ok("third")

    provider = openai_factory(api_key="sk-test", base_url="https://img.openai.test/v1",
                              transport=httpx2.MockTransport(handler))

    async def go() -> Any:
        try:
            return await provider.complete("gpt-4o", request_for(case(vision, "vision-009")))
        finally:
            await provider.aclose()

    out = run(go())
    assert out.ok and out.text == "third"
    body = json.loads(seen[0].content)
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    parts = user["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url", "image_url", "text"]
    assert parts[0] == {"type": "text", "text": "Here are three images."}
    for part, name in zip(parts[1:4], ["dots-5.png", "dots-3.png", "dots-8.png"], strict=True):
        assert set(part) == {"type", "image_url"} and set(part["image_url"]) == {"url"}
        assert decode_data_url(part["image_url"]["url"]) == ("image/png", file_bytes(name))
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ChatCompletionMessageParam)
    for message in body["messages"]:
        sdk_accepts(adapter, message)


def test_anthropic_sdk_sends_base64_image_blocks_with_media_type(vision: Suite) -> None:
    seen: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req)
        return httpx2.Response(200, json={
            "id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "green"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 90, "output_tokens": 1}})

    provider = anthropic_factory(api_key="sk-ant-test", base_url="https://img.anthropic.test",
                                 transport=httpx2.MockTransport(handler))
    inline, from_file = case(vision, "vision-010"), case(vision, "vision-005")

    async def go() -> list[Any]:
        try:
            return [await provider.complete("claude-sonnet-4-5", request_for(c))
                    for c in (inline, from_file)]
        finally:
            await provider.aclose()

    outs = run(go())
    assert [o.text for o in outs] == ["green", "green"]
    first, second = (json.loads(r.content) for r in seen)
    assert first["system"] == "Be brief."
    (message,) = first["messages"]
    assert message["role"] == "user"
    text, image = message["content"]
    assert text == {"type": "text", "text": "What colour fills this image? Answer with one word."}
    assert image["type"] == "image" and set(image) == {"type", "source"}
    assert set(image["source"]) == {"type", "media_type", "data"}
    assert image["source"]["type"] == "base64" and image["source"]["media_type"] == "image/png"
    # The data URL's own bytes, re-encoded as a bare base64 string (no "data:" prefix).
    url = json.loads((VISION / "cases.jsonl").read_text().splitlines()[9])["input"][0][
        "content"][1]["url"]
    assert base64.b64decode(image["source"]["data"]) == decode_data_url(url)[1]
    # An image first and text after stays in that order.
    blocks = second["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["image", "text"]
    assert base64.b64decode(blocks[0]["source"]["data"]) == file_bytes("square.png")
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(MessageParam)
    for body in (first, second):
        for m in body["messages"]:
            sdk_accepts(adapter, m)


def test_compatible_servers_get_openai_image_parts_over_a_socket(
    vision: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with StubLLMServer(keep_log=True) as server:
        monkeypatch.setenv("VLLM_BASE_URL", f"{server.base_url}/v1")
        registry = ProviderRegistry()

        async def go() -> Any:
            try:
                provider, model = registry.for_model("vllm/qwen2.5-vl-7b")
                return await provider.complete(model, request_for(case(vision, "vision-001")))
            finally:
                await registry.aclose()

        out = run(go())
    assert out.ok
    ((path, _, body),) = server.log
    assert path == "/v1/chat/completions"
    text, image = body["messages"][1]["content"]
    assert text["type"] == "text" and image["type"] == "image_url"
    assert decode_data_url(image["image_url"]["url"]) == ("image/png", file_bytes("bars.png"))


def test_fake_model_answers_image_cases_and_says_what_it_saw(vision: Suite) -> None:
    fake = FakeProvider()
    when = datetime(2026, 11, 9, 6, tzinfo=UTC)
    c = case(vision, "vision-009")
    # No reference: the fake cannot "know" the answer, so it describes what it was shown.
    out = run(fake.complete("stable", request_for(c, as_of=when)))
    assert out.ok
    sizes = [len(file_bytes(f"dots-{n}.png")) for n in (5, 3, 8)]
    assert out.text == "I am not certain about this one. I see " + " and ".join(
        f"a 160x48 image/png ({n:,} bytes)" for n in sizes) + "."
    assert out.text == run(fake.complete("stable", request_for(c, as_of=when))).text
    # Each image counts as tokens: a three-image prompt is longer than its words alone.
    assert out.input_tokens is not None and out.input_tokens > 3 * 85


def image_suite(folder: Path, image: bytes, name: str = "x.png") -> Suite:
    (folder / "img").mkdir(parents=True)
    (folder / "img" / name).write_bytes(image)
    return load_suite(write_suite(folder, [{
        "id": "c-1", "input": [{"role": "user", "content": [
            {"type": "text", "text": "Colour?"}, {"type": "image", "path": f"img/{name}"}]}],
        "ideal": "red", "assertion": {"type": "contains"}}]))


def test_the_response_cache_tells_images_apart(tmp_path: Path) -> None:
    red = image_suite(tmp_path / "a", png_bytes(rgb=(255, 0, 0)))
    blue = image_suite(tmp_path / "b", png_bytes(rgb=(0, 0, 255)))
    red_again = image_suite(tmp_path / "c", png_bytes(rgb=(255, 0, 0)), name="other-name.png")
    a, b, c = (request_for(s.cases[0]) for s in (red, blue, red_again))
    assert cache_key("fake/stable", a) != cache_key("fake/stable", b)
    assert cache_key("fake/stable", a) == cache_key("fake/stable", c)
    cache = ResponseCache(LocalStore(tmp_path / "store"))
    first = run(FakeProvider().complete("stable", a))
    run(cache.put("fake/stable", a, first))
    assert run(cache.get("fake/stable", b)) is None
    hit = run(cache.get("fake/stable", c))
    assert hit is not None and hit.cached and hit.text == first.text


def test_an_image_run_writes_parquet_rows_without_image_bytes_and_caches_by_image(
    vision: Suite, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(req.content))
        return chat_ok()

    store = LocalStore(tmp_path / "data")
    options = {"openai": {"api_key": "sk-test", "base_url": "https://rows.openai.test/v1",
                          "transport": httpx2.MockTransport(handler)}}
    when = datetime(2026, 11, 9, 6, tzinfo=UTC)
    for run_id in ("img-1", "img-2"):  # the second run is answered from the cache
        config = resolve_config(vision, run_id=run_id, samples=2, as_of=when, use_cache=True)
        run_shard(vision, "openai/gpt-4o", vision.cases, config, store, provider_options=options)
    assert len(seen) == 2 * len(vision.cases)
    files = sorted((tmp_path / "data").rglob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    rows = table.to_pylist()
    assert len(rows) == 4 * len(vision.cases)
    assert all(r["error"] is None and r["suite_hash"] == vision.hash for r in rows)
    assert sum(r["passed"] for r in rows) == 4  # "blue" answers only the bar chart
    assert sum('"cached":true' in (r["metadata_json"] or "") for r in rows) == 2 * len(
        vision.cases)
    stored = json.dumps(rows, default=str)
    images = [p["data"] for c in vision.cases for m in c.messages()
              if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image"]
    assert len(images) == 12 and all(data[:64] in json.dumps(seen) for data in images)
    assert not any(data[:64] in stored for data in images)
