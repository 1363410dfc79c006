"""The API's Prometheus metrics: what it counts while serving, and what it reads at scrape time.

Counted as requests are served (one ``CollectorRegistry`` per app, so several apps in one process
never share a series): requests and their latency by route template and status, submitted results
by outcome, refused submissions by reason, failed spool flushes. Read at each scrape (see
api/gauges.py): the spool's backlog, the last nightly's counts and a few gauges per published
model. Every label value comes from a fixed set, from the app's own route table, or
from the published summaries, never from a request: a scan of random paths or a flood of made-up
model ids adds no series. Names and labels are documented in docs/api.md#metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.routing import BaseRoute

from api.gauges import ScrapeCollector, SummaryReader, SummarySnapshot
from api.spool import Outcome, Spool

# The label of every request no route matched (a scan of random paths is one series, not many).
UNMATCHED = "<unmatched>"
# Methods outside this set (anything a client can type) are counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SUBMIT_ROUTES = frozenset({"/api/submit", "/api/submit/batch"})
OUTCOMES: tuple[str, ...] = ("accepted", "duplicate")
# Why a submission request was refused, by the status it got; ``hash_mismatch`` is set by the
# route itself (a 422 of its own), anything unlisted is ``other``.
REFUSAL_BY_STATUS = {
    400: "bad_request", 401: "unauthorized", 413: "too_large", 422: "invalid",
    429: "rate_limited", 431: "headers_too_large", 503: "unavailable",
}
HASH_MISMATCH = "hash_mismatch"
REFUSAL_REASONS: tuple[str, ...] = (
    *REFUSAL_BY_STATUS.values(), HASH_MISMATCH, "server_error", "other",
)
# Sub-millisecond first: a summary read is served in well under 1 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# prometheus_client keeps counters in shared files when this is set (several worker processes,
# docs/deploy.md); a scrape must then read every process's files, not this process's memory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_REFUSAL_SCOPE_KEY = "plumbline.refusal"
_CONVERTOR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[A-Za-z_]+\}")


def route_template(route: BaseRoute | None) -> str:
    """A route's path template without Starlette's convertors (``{model_id:path}`` →
    ``{model_id}``); ``<unmatched>`` for no route."""
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path:
        return UNMATCHED
    return _CONVERTOR_RE.sub(r"{\1}", path)


def mark_refusal(request: Request, reason: str) -> None:
    """Name the reason a submission is about to be refused, when its status alone does not (a
    hash mismatch is a 422 like any invalid body)."""
    if reason not in REFUSAL_REASONS:
        raise ValueError(f"unknown refusal reason {reason!r}")
    request.scope[_REFUSAL_SCOPE_KEY] = reason


def token_matches(sent: str, expected: str) -> bool:
    """Constant-time comparison; hashing first hides the expected token's length too."""
    return hmac.compare_digest(hashlib.sha256(sent.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


class _Chain(Collector):
    def __init__(self, collectors: Sequence[Any]) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()



# --- the app's metrics ------------------------------------------------------------------------

class ApiMetrics:
    """One app's metrics: its own registry, counted while serving, rendered by ``render``."""

    def __init__(self, *, max_models: int = 500) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.max_models = max_models
        self.summaries = SummaryReader()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter(
            "plumbline_http_requests", "HTTP requests served, by route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "plumbline_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.results = Counter(
            "plumbline_submission_results",
            "Submitted results by outcome (a batch counts each of its results).",
            ["outcome"], registry=self.registry)
        self.refused = Counter(
            "plumbline_submissions_refused",
            "Submission requests refused, by route and reason (a request, however many "
            "results it carried).", ["route", "reason"], registry=self.registry)
        self.flush_failures = Counter(
            "plumbline_spool_flush_failures",
            "Flushes of the spool to the store that failed (the rows stay spooled).",
            registry=self.registry)
        # Every fixed series exists from the start at 0, so rate() and alerts see it at once.
        for outcome in OUTCOMES:
            self.results.labels(outcome)
        for route in sorted(SUBMIT_ROUTES):
            for reason in REFUSAL_REASONS:
                self.refused.labels(route, reason)

    # counted while serving

    def observe(self, method: str, route: str, status: int, seconds: float,
                refusal: str | None = None) -> None:
        method = method if method in METHODS else "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            # Every label is bounded (see the module docstring), so this cache is too; it saves
            # the client's locked label lookups on the hot read path.
            code = str(status)
            children = self._children[key] = (self.requests.labels(method, route, code),
                                              self.latency.labels(method, route, code))
        children[0].inc()
        children[1].observe(seconds)
        if route in SUBMIT_ROUTES and method == "POST" and status >= 400:
            reason = refusal or REFUSAL_BY_STATUS.get(status) or (
                "server_error" if status >= 500 else "other")
            self.refused.labels(route, reason).inc()

    def submitted(self, outcomes: Iterable[Outcome]) -> None:
        accepted = duplicate = 0
        for outcome in outcomes:
            if outcome.status == "accepted":
                accepted += 1
            else:
                duplicate += 1
        self.results.labels("accepted").inc(accepted)
        self.results.labels("duplicate").inc(duplicate)

    def flush_failed(self) -> None:
        self.flush_failures.inc()

    # read at scrape time

    def render(self, snapshot: SummarySnapshot, spool: Spool,
               now: Callable[[], float] = time.time) -> bytes:
        """The text exposition (format 0.0.4) of everything. Reads the spool: call it off the
        event loop."""
        scrape = ScrapeCollector(snapshot, spool, self.max_models, now())
        path = os.environ.get(MULTIPROC_ENV)
        counted: Any = MultiProcessCollector(None, path) if path else self.registry
        return generate_latest(_Chain([counted, scrape]))


# --- the middleware ---------------------------------------------------------------------------

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Any], Callable[[Message], Any]], Any]


@dataclass(frozen=True, slots=True)
class _RouteEntry:
    regex: re.Pattern[str]
    methods: frozenset[str] | None
    template: str


def route_table(routes: Iterable[BaseRoute]) -> list[_RouteEntry]:
    """Every route's path regex, methods and template, in matching order.

    FastAPI 0.150 keeps an included router as one route whose ``effective_route_contexts``
    carry the real paths; earlier versions list the routes themselves. Both are read here.
    """
    table = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for r in contexts() if callable(contexts) else [route]:
            regex = getattr(r, "path_regex", None)
            if isinstance(regex, re.Pattern):
                methods = getattr(r, "methods", None)
                table.append(_RouteEntry(regex, frozenset(methods) if methods else None,
                                         route_template(r)))
    return table


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it.

    Installed outermost, so the limits' own answers (429, 413, 431) are counted too. The route is
    the one the router matched; a request a middleware answered before routing is matched here
    against the same routes (``routes``: the app's route table, read once at the first such
    request, when every router is included).
    """

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics,
                 routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._table: list[_RouteEntry] | None = None
        self._templates: dict[int, str] = {}

    def _unrouted(self, scope: Scope) -> str:
        if self._table is None:
            self._table = route_table(self.routes())
        path, method = scope.get("path", ""), scope.get("method", "")
        partial = None
        for entry in self._table:
            if entry.regex.match(path):
                if entry.methods is None or method in entry.methods:
                    return entry.template
                partial = partial or entry.template  # as the router would: a 405 of this route
        return partial or UNMATCHED

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return self._unrouted(scope)
        # Route objects live as long as the app: the cache holds one entry per route.
        template = self._templates.get(id(route))
        if template is None:
            template = self._templates[id(route)] = route_template(route)
        return template

    async def __call__(self, scope: Scope, receive: Callable[[], Any],
                       send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope.get("method", ""), self._template(scope), status,
                                 time.perf_counter() - start, scope.get(_REFUSAL_SCOPE_KEY))
