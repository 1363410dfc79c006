"""``http/<name>`` targets: your own HTTP service (a RAG API, an agent) evaluated like a model.

Each target is a table of the targets file (``PLUMBLINE_TARGETS_FILE``, default ``targets.toml``
in the working directory; read and checked by ``http_target_config``): the URL and method,
headers (secrets named, never written), a body template filled with the case's input, messages
and the call's parameters, and JSONPath expressions for the answer's text and token counts.

The calls go through ``HTTPProvider``, as the big APIs' do: one pooled client per target, the
target's RPM/TPM limits and in-flight bound, retries on 429/5xx/timeouts honouring
``Retry-After``, and every failure, a 2xx body without the text path included, an error row.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2

from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.http_base import (
    DEFAULT_TIMEOUT_S,
    HTTPProvider,
    MalformedResponse,
    StatusError,
    classify_http_error,
    snippet,
)
from tasks.providers.http_target_config import (
    DEFAULT_TARGETS_FILE,
    SecretLoader,
    TargetSpec,
    default_secret_loader,
    load_targets,
    redact,
    render,
    render_query,
    resolve_headers,
)
from tasks.providers.limits import ProviderLimits
from tasks.providers.target_call import TargetCall
from tasks.retry import Failure


class TargetEndpoint(HTTPProvider):
    """One target: its own client, limits, retries and (after a 401/403) stop."""

    def __init__(self, spec: TargetSpec, *, load_secret: SecretLoader,
                 timeout: float | None = None, **options: Any) -> None:
        super().__init__(name="http", api_key="", base_url=spec.url,
                         timeout=spec.timeout_s or timeout or DEFAULT_TIMEOUT_S,
                         limits_key=f"http/{spec.name}", **options)
        self.spec = spec
        self._load_secret = load_secret
        self._headers: dict[str, str] | None = None
        self._secrets: tuple[str, ...] = ()
        self._resolving = asyncio.Lock()

    def auth_hint(self) -> str:
        return f"check the headers of {self.spec.where()}"

    def _make_sdk(self, http: httpx2.AsyncClient) -> Any:
        return http

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        if self._headers is None and self._fatal is None:
            async with self._resolving:
                if self._headers is None and self._fatal is None:
                    try:
                        # A Prefect Secret block is read over the API: not on the event loop.
                        self._headers, self._secrets = await asyncio.to_thread(
                            resolve_headers, self.spec, self._load_secret)
                    except ProviderConfigError as exc:
                        self._fatal = str(exc)
        completion = await super().complete(model, request)
        if completion.text is not None and self._secrets:
            text = redact(completion.text, self._secrets)
            if text != completion.text:
                completion = replace(completion, text=text)
        return completion

    async def _send(self, sdk: Any, model: str, request: CompletionRequest) -> Completion:
        spec, http = self.spec, sdk
        values = TargetCall.from_request(model, request).values()
        headers = dict(self._headers or {})
        content = None
        if spec.body is not None:
            content = json.dumps(render(spec.body, values), ensure_ascii=False,
                                 separators=(",", ":")).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["content-type"] = "application/json"
        params = render_query(spec.query, values) if spec.query else None
        # Never follow a redirect: the headers (secrets included) go to the configured URL only
        # (said here too, not only by the pooled client's default, for a client a test gives).
        response = await http.request(spec.method, spec.url, content=content, headers=headers,
                                      params=params, follow_redirects=False)
        if not 200 <= response.status_code < 300:
            raise StatusError(response.status_code, snippet(response.text), response.headers)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise MalformedResponse(f"the body is not JSON ({exc}): "
                                    f"{snippet(response.text)}") from None
        text = self._text(data)
        return Completion(text=text, input_tokens=self._count(data, "input_tokens"),
                          output_tokens=self._count(data, "output_tokens"))

    def _text(self, data: Any) -> str:
        expr = self.spec.response["text"]
        found = self.spec.paths["text"].find(data)
        if not found:
            raise MalformedResponse(
                f"no value at response path {expr} (response.text of {self.spec.where()}); "
                f"the body was {snippet(json.dumps(data, ensure_ascii=False))}")
        value = found[0].value
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise MalformedResponse(f"the value at response path {expr} is a "
                                f"{type(value).__name__}, not text")

    def _count(self, data: Any, key: str) -> int | None:
        path = self.spec.paths.get(key)
        if path is None:
            return None
        found = path.find(data)
        value = found[0].value if found else None
        # A count the service did not send is unknown, not a reason to drop the answer.
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        return None

    def _classify(self, exc: Exception) -> Failure:
        secrets = self._secrets
        return classify_http_error(exc, self.timeout, lambda text: redact(text, secrets))


class HTTPTargetProvider:
    """The ``http`` prefix: ``http/<name>`` calls the target ``<name>`` of the targets file.

    The file is read and checked when the provider is built (a run builds it while checking its
    models, before any call). ``limits`` (the run's, for the ``http`` prefix) override each
    target's own; ``timeout`` applies to a target without ``timeout_s``. ``targets`` replaces
    the file (tests); ``load_secret`` replaces the Prefect Secret lookup.
    """

    name = "http"

    def __init__(
        self,
        *,
        targets_file: Path | str | None = None,
        targets: Mapping[str, TargetSpec] | None = None,
        limits: Mapping[str, Any] | ProviderLimits | None = None,
        load_secret: SecretLoader | None = None,
        **options: Any,
    ) -> None:
        self.targets_file = Path(targets_file) if targets_file else DEFAULT_TARGETS_FILE
        self.targets = dict(targets) if targets is not None else load_targets(self.targets_file)
        if isinstance(limits, ProviderLimits):
            limits = {"rpm": limits.rpm, "tpm": limits.tpm,
                      "max_in_flight": limits.max_in_flight}
        self._limits = {k: v for k, v in (limits or {}).items() if v is not None}
        self._load_secret = load_secret or default_secret_loader
        self._options = options
        self._endpoints: dict[str, TargetEndpoint] = {}

    def spec(self, model: str) -> TargetSpec:
        found = self.targets.get(model)
        if found is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise ProviderConfigError(f"no target {model!r} in the targets file "
                                      f"{self.targets_file} (defined: {known})")
        return found

    def check_model(self, model: str) -> None:
        """The target exists and its header secrets resolve (their values are dropped)."""
        resolve_headers(self.spec(model), self._load_secret)

    def endpoint(self, model: str) -> TargetEndpoint:
        endpoint = self._endpoints.get(model)
        if endpoint is None:
            spec = self.spec(model)
            endpoint = TargetEndpoint(spec, load_secret=self._load_secret,
                                      limits={**spec.limits, **self._limits}, **self._options)
            self._endpoints[model] = endpoint
        return endpoint

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        return await self.endpoint(model).complete(model, request)

    async def aclose(self) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for endpoint in endpoints:
            await endpoint.aclose()
