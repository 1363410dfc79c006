"""What every real-API provider shares: one HTTP client, pacing, in-flight bound, retries, cost.

A subclass only says how to send one request with its SDK (``_send``) and how to read that SDK's
exceptions (``_classify``). ``complete()`` never raises for a failed call: after the last
attempt the failure is a ``Completion`` with ``error`` set, and the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from types import ModuleType
from typing import Any

import aiohttp
import httpx2
from httpx_aiohttp.httpx2 import Httpx2AiohttpClient

from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.limits import ProviderLimits, shared_limits
from tasks.providers.pricing import PriceTable, load_pricing
from tasks.retry import Failure, RetryPolicy, parse_retry_after, status_retryable

DEFAULT_TIMEOUT_S = 120.0
# Errors become rows; a provider's full error body can be kilobytes of HTML from a gateway.
_MAX_ERROR_LEN = 500

Sleep = Callable[[float], Awaitable[None]]


class MalformedResponse(ValueError):
    """The provider answered 2xx with a body that is not the API's shape."""


class StatusError(Exception):
    """An endpoint called without an SDK answered with a status outside 2xx."""

    def __init__(self, status: int, detail: str, headers: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers


def pooled_client(**kwargs: Any) -> httpx2.AsyncClient:
    """The HTTP client of the SDK-backed providers' calls unless a test gives its own: httpx2's
    interface (what the openai and anthropic SDKs take) over aiohttp's connection pool
    (``httpx-aiohttp``), about half the CPU per call of httpx2's own transport. Redirects are
    not followed (httpx2's default): a key goes to the configured URL only. Certificates are
    checked against ``tls_context()``."""
    kwargs.setdefault("verify", tls_context())
    return Httpx2AiohttpClient(**kwargs)


class JSONPoster:
    """POSTs of ready-made JSON bodies to one URL over aiohttp's connection pool, with fixed
    headers: what a compatible server's calls go through unless a test gives its own transport
    or the environment names a proxy (``pooled_client`` resolves proxies).

    No httpx2 request, response and stream objects around each call: they were a quarter of the
    call's CPU (0.36 against 0.27 ms per call over 20,000 calls; docs/benchmarks.md, "Run
    cost"). Redirects are not followed. Certificates are checked against ``tls_context()``; with
    ``tls=False`` (a plain-``http`` URL) against ``refuse_tls()``, so a TLS connection fails.
    Timeouts: ``timeout`` to get a connection and for each read, at most 10 s to connect.
    Made inside the event loop that uses it (an aiohttp session belongs to one loop).
    """

    def __init__(self, url: str, headers: Mapping[str, str], *, connections: int,
                 timeout: float, tls: bool) -> None:
        self._url = url
        self._headers = dict(headers)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections,
                                           ssl=tls_context() if tls else refuse_tls()),
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout,
                                          sock_connect=min(10.0, timeout), sock_read=timeout))

    async def post(self, content: bytes) -> tuple[int, bytes, Mapping[str, str]]:
        """Status, body and headers of the answer to one POST of ``content``."""
        async with self._session.post(self._url, data=content, headers=self._headers,
                                      allow_redirects=False) as response:
            return response.status, await response.read(), response.headers

    async def aclose(self) -> None:
        await self._session.close()


@cache
def tls_context() -> ssl.SSLContext:
    """The verified TLS context of every pooled client and ``JSONPoster`` in this process: httpx2's
    default (certifi's CAs; ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set), built once. Loading
    the CA bundle is ~20 ms of CPU under OpenSSL 3, which each client paid before."""
    return httpx2.create_ssl_context()


def refuse_tls() -> ssl.SSLContext:
    """A TLS context that verifies certificates and hostnames and trusts no CA: every TLS
    handshake made with it fails. For connections that only ever speak plain HTTP."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class HTTPProvider:
    """Base of the SDK-backed providers. ``name`` is the model-id prefix (``openai``, ``groq``).

    Pass ``http_client`` (an ``httpx2.AsyncClient``, kept open by its owner) or ``transport``
    (wrapped in a client this provider owns) to talk to a mock or a local server; the SDKs used
    here (openai 3, anthropic 2) are built on ``httpx2``, httpx's successor with the same API.
    """

    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        base_url: str | None,
        http_client: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        limits: ProviderLimits | dict[str, Any] | None = None,
        pricing: PriceTable | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        limits_key: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ProviderConfigError(f"provider {name!r}: timeout must be positive")
        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limits = ProviderLimits.from_mapping(
            f"limits for provider {name!r} (PLUMBLINE_PROVIDER_LIMITS or the run's limits)",
            limits)
        self.pricing = pricing or load_pricing()
        self._api_key = api_key
        self._given_client = http_client
        self._transport = transport
        # What aclose() closes: the client (or transport) this provider made, not one it was given.
        self._http: httpx2.AsyncClient | httpx2.AsyncBaseTransport | JSONPoster | None = None
        self._sdk: Any = None
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        # Calls to one endpoint share its limits, whichever run or shard makes them;
        # ``limits_key`` names the endpoint when the URL alone does not (an HTTP target).
        self._limiter, self._gate = shared_limits(limits_key or f"{name}|{base_url or ''}",
                                                  self.limits)
        # Set after a 401/403: every further call would fail the same way, so none is made.
        self._fatal: str | None = None

    # --- for subclasses ---------------------------------------------------------------------

    def _make_sdk(self, http: httpx2.AsyncClient) -> Any:
        raise NotImplementedError

    async def _send(self, sdk: Any, model: str, request: CompletionRequest) -> Completion:
        """One attempt; returns text, finish reason and tokens (latency and cost are added)."""
        raise NotImplementedError

    def _classify(self, exc: Exception) -> Failure:
        raise NotImplementedError

    def auth_hint(self) -> str:
        """What a 401/403 error row tells the user to check."""
        return f"check the {self.name} API key"

    # --- the protocol -----------------------------------------------------------------------

    def check_model(self, model: str) -> None:
        if not model.strip():
            raise ProviderConfigError(f"provider {self.name!r}: empty model name")

    def _client(self) -> Any:
        # Built on first use, inside the event loop that will use it (an httpx2 client's pool
        # belongs to one loop), and never for a run that only checks its configuration.
        if self._sdk is None:
            self._sdk = self._open()
        return self._sdk

    def _pool_limits(self) -> httpx2.Limits:
        pool = self.limits.max_in_flight
        return httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)

    def _open(self) -> Any:
        """What ``_send`` is given: the SDK's client over the pooled httpx2 client (or the one a
        test gave, or one around the transport a test gave)."""
        http = self._given_client
        if http is None:
            kwargs: dict[str, Any] = {
                "timeout": httpx2.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                "limits": self._pool_limits(),
            }
            if self._transport is not None:
                http = httpx2.AsyncClient(transport=self._transport, **kwargs)
            else:
                http = pooled_client(**kwargs)
            self._http = http
        return self._make_sdk(http)

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        if self._fatal is not None:
            return Completion(None, error=self._fatal, attempts=0)
        sdk = self._client()
        model_id = f"{self.name}/{model}"
        reserve = token_estimate(request) if self._limiter.tpm else 0
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire(reserve, self._sleep)
            async with self._gate:
                started = time.perf_counter()
                try:
                    result = await self._send(sdk, model, request)
                except Exception as exc:
                    failure = self._classify(exc)
                else:
                    failure = None
                latency_ms = round((time.perf_counter() - started) * 1000, 1)
            if failure is None:
                used = (result.input_tokens or 0) + (result.output_tokens or 0)
                self._limiter.settle(reserve, used if used else reserve)
                return Completion(
                    text=result.text,
                    finish_reason=result.finish_reason,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    latency_ms=latency_ms,
                    cost_usd=self.pricing.cost(model_id, result.input_tokens,
                                               result.output_tokens),
                    attempts=attempt,
                )
            # A failed request was not served: its tokens go back to the budget.
            self._limiter.settle(reserve, 0)
            if failure.auth:
                self._fatal = f"{failure.message} ({self.auth_hint()})"
            give_up = (not failure.retryable or attempt >= self.retry.max_attempts
                       or self.retry.asks_too_much(failure.retry_after))
            if give_up:
                return Completion(None, error=_error_text(failure, attempt),
                                  latency_ms=latency_ms, attempts=attempt)
            delay = self.retry.delay(attempt, failure.retry_after, self._rng)
            if failure.rate_limited:
                # Everyone on this endpoint waits, not just this call: the limit is shared.
                # The limiter's acquire() at the top of the loop does the waiting.
                self._limiter.pause(delay)
            else:
                await self._sleep(delay)

    async def aclose(self) -> None:
        sdk, http = self._sdk, self._http
        self._sdk = self._http = None
        if http is not None:
            await http.aclose()
        elif sdk is not None and self._given_client is None:
            await sdk.close()


def token_estimate(request: CompletionRequest) -> int:
    """Tokens to reserve against a TPM limit before a call: the prompt plus ``max_tokens``."""
    # ~4 characters a token for English; providers count max_tokens against TPM up front.
    chars = sum(len(m.get("content") or "") for m in request.messages)
    return chars // 4 + 8 + request.max_tokens


def _error_text(failure: Failure, attempts: int) -> str:
    text = failure.message
    if len(text) > _MAX_ERROR_LEN:
        text = text[:_MAX_ERROR_LEN] + "…"
    if attempts > 1:
        text += f" (gave up after {attempts} attempts)"
    elif failure.retry_after is not None and failure.retryable:
        text += f" (Retry-After {failure.retry_after:.0f}s is longer than the cap)"
    return text


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def transport_failure(exc: httpx2.TransportError, timeout: float) -> Failure:
    """A request that got no HTTP answer: a timeout, or a connection that failed (both retried).

    For callers that use an ``httpx2`` client directly (the ``http/<name>`` targets).
    """
    return _no_answer(exc, isinstance(exc, httpx2.TimeoutException), timeout)


def _no_answer(exc: BaseException, timed_out: bool, timeout: float) -> Failure:
    """A call that got no HTTP answer, read from its root cause: a certificate that is not
    trusted (the same on every attempt: not retried), a timeout, or a failed connection (both
    retried). ``timed_out``: the client library reported a timeout; the aiohttp transports
    report a refused connection as a connect timeout too, which the root cause corrects."""
    root = _root_cause(exc)
    cert = getattr(exc, "certificate_error", None)  # aiohttp's ClientConnectorCertificateError
    for cause in (cert, root):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Failure(f"TLS certificate not trusted: {cause}", retryable=False)
    refused = isinstance(root, OSError) and not isinstance(root, TimeoutError)
    if timed_out and not refused:
        return Failure(f"timeout: no response within {timeout:g}s", retryable=True)
    return Failure(f"connection error: {type(root).__name__}: {root}", retryable=True)


def snippet(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters: what an error row quotes of a body."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def classify_http_error(exc: Exception, timeout: float,
                        redact: Callable[[str], str] = str) -> Failure:
    """Read the failure of a call made with an httpx2 client directly (no SDK): a
    ``StatusError``, a ``MalformedResponse``, a transport error, or anything else (not retried).
    ``redact`` removes secrets from what the row will say."""
    if isinstance(exc, StatusError):
        return Failure(f"HTTP {exc.status}: {redact(exc.detail)}",
                       retryable=status_retryable(exc.status), status=exc.status,
                       retry_after=parse_retry_after(exc.headers))
    if isinstance(exc, MalformedResponse | json.JSONDecodeError):
        return Failure(f"malformed response: {redact(str(exc))}", retryable=False)
    if isinstance(exc, httpx2.TransportError):
        return transport_failure(exc, timeout)
    if isinstance(exc, aiohttp.ClientError | TimeoutError):  # a JSONPoster's call
        # aiohttp's connect and read timeouts are TimeoutErrors.
        return _no_answer(exc, isinstance(exc, TimeoutError), timeout)
    return Failure(f"{type(exc).__name__}: {redact(str(exc))}", retryable=False)


def classify_sdk_error(exc: Exception, sdk: ModuleType, timeout: float) -> Failure:
    """Read an openai/anthropic SDK exception (both SDKs share the shape of their errors)."""
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        detail = getattr(exc, "message", None) or str(exc)
        return Failure(
            f"HTTP {status}: {detail}",
            retryable=status_retryable(status),
            status=status,
            retry_after=parse_retry_after(exc.response.headers),
        )
    if isinstance(exc, sdk.APIConnectionError):
        return _no_answer(exc, isinstance(exc, sdk.APITimeoutError), timeout)
    if isinstance(exc, MalformedResponse | json.JSONDecodeError | sdk.APIResponseValidationError):
        # Not retried: a server that answers 200 with a broken body tends to keep doing it.
        return Failure(f"malformed response: {exc}", retryable=False)
    return Failure(f"{type(exc).__name__}: {exc}", retryable=False)
