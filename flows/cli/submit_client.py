"""``plumbline submit``'s HTTP side: results go to a Plumbline API in batches through
``POST /api/submit/batch`` (or one per ``POST /api/submit``, the Pramana CLI's endpoint).

A batch holds at most the API's 500 results and stays under a byte budget; a 413 halves the
budget and splits the batch, a 422 naming some items drops those (each counted as failed with its
reason) and sends the rest. An HTTP 429 waits as long as ``Retry-After`` says, a 5xx or a
network error backs off, a refused token stops the upload. Every result ends as accepted,
duplicate or failed: nothing is dropped without being counted. With a progress file
(submit_resume.py) results acknowledged by an earlier, interrupted run are not sent again.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from flows.cli.submit_resume import ProgressFile, digest
from flows.cli.submit_source import payloads
from tasks.errors import SubmitError
from tasks.retry import AUTH_STATUS, RetryPolicy, parse_retry_after

SUBMIT_PATH = "/api/submit"
BATCH_PATH = "/api/submit/batch"
# The API's MAX_BATCH (api/schemas.py; a test keeps the two equal).
MAX_BATCH_ITEMS = 500
# Under the API's default MAX_BODY_BYTES (2 MiB) and nginx's default client_max_body_size (1 MiB),
# so a batch fits in front of the usual proxy too (500 results with short answers take 0.25 MB).
# A 413 halves it for the rest of the upload.
DEFAULT_BATCH_BYTES = 1024 * 1024
_BATCH_OPEN, _BATCH_CLOSE = b'{"results":[', b"]}"
# Doubling from 1 s without jitter (one client, nobody to spread from); a 429's Retry-After is
# waited in full up to 5 minutes, the API's own rate-limit window being one minute.
SUBMIT_RETRY = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=3600.0, jitter=False,
                           max_retry_after=300.0)
# 429s are the server pacing us, not failures: they do not use up max_attempts, but a request
# still rate limited after this many waits (at least half an hour at the API's limit) gives up.
MAX_RATE_LIMITED = 30
_INDEXED_DETAIL = re.compile(r"results\[(\d{1,6})\]: (.*)", re.DOTALL)


class SubmitRefused(SubmitError):
    """The API refuses every request the same way (token refused, no submit endpoint)."""


@dataclass
class SubmitReport:
    """What happened to each result: the counts a user checks, and why any failed."""

    total: int = 0  # results to submit (rows that are failed calls not included)
    accepted: int = 0
    # The API had it already: from an earlier run, or from an attempt whose answer was lost.
    duplicate: int = 0
    failed: int = 0
    skipped: int = 0  # rows that are failed calls (an error, no output): nothing to submit
    resumed: int = 0  # acknowledged in an earlier run (the progress file): not sent again
    requests: int = 0  # HTTP requests made, retries included
    fell_back: bool = False  # the API has no batch endpoint: sent one result per request
    aborted: str | None = None  # why the upload stopped early (SubmitRefused)
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.accepted + self.duplicate + self.failed + self.resumed


@dataclass(frozen=True)
class Item:
    """One result as sent: its JSON body and its digest in the progress file."""

    label: str
    digest: str
    body: bytes


def prepare(rows: Iterable[Mapping[str, Any]], report: SubmitReport,
            base_timestamp: datetime) -> list[Item]:
    """Each row's payload as JSON bytes (counting failed calls as skipped).

    A payload without a timestamp (a Pramana file may omit it) gets ``base_timestamp`` plus its
    position in microseconds: the server would use its own clock, which makes a resent result a
    new one; a fixed value, kept in the progress file, makes it the same result (``duplicate``).
    """
    items = []
    for index, payload in enumerate(payloads(rows, report)):
        if payload.get("timestamp") is None:
            stamp = base_timestamp.astimezone(UTC) + timedelta(microseconds=index)
            payload = {**payload, "timestamp": stamp.isoformat()}
        label = f"{payload.get('model_id')} {payload.get('prompt_id')}"
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:  # NaN or a value JSON cannot hold
            report.failed += 1
            report.errors.append(f"{label}: cannot be sent as JSON: {exc}")
            continue
        items.append(Item(label, digest(body), body))
    return items


def batches(items: Sequence[Item], max_items: int,
            budget: Callable[[], int]) -> Iterator[list[Item]]:
    """Consecutive batches of at most ``max_items`` whose body fits ``budget()`` bytes (read anew
    for every batch, so a budget lowered by a 413 holds from the next batch on). A result larger
    than the budget goes alone."""
    batch: list[Item] = []
    size = len(_BATCH_OPEN) + len(_BATCH_CLOSE)
    for item in items:
        extra = len(item.body) + (1 if batch else 0)
        if batch and (len(batch) >= max_items or size + extra > budget()):
            yield batch
            batch, size = [], len(_BATCH_OPEN) + len(_BATCH_CLOSE)
            extra = len(item.body)
        batch.append(item)
        size += extra
    if batch:
        yield batch


def _batch_body(batch: Sequence[Item]) -> bytes:
    return _BATCH_OPEN + b",".join(i.body for i in batch) + _BATCH_CLOSE


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _detail(resp: httpx.Response) -> str:
    body = _json(resp)
    if body is None:
        return resp.text[:200]
    if isinstance(body, dict) and "detail" in body:
        return json.dumps(body["detail"])[:300]
    return json.dumps(body)[:300]


def _refused_items(resp: httpx.Response, count: int) -> dict[int, str]:
    """The items of a batch a 422 names (index → reason), read from an untrusted answer.

    The API names them either as ``"results[i]: ..."`` (a hash mismatch) or in FastAPI's
    validation list (``loc = ["body", "results", i, field]``).
    """
    detail = body.get("detail") if isinstance(body := _json(resp), dict) else None
    found: dict[int, list[str]] = {}
    if isinstance(detail, str):
        match = _INDEXED_DETAIL.fullmatch(detail)
        if match and int(match[1]) < count:
            found[int(match[1])] = [match[2][:300]]
    elif isinstance(detail, list):
        for problem in detail[:1000]:
            loc = problem.get("loc") if isinstance(problem, dict) else None
            if (isinstance(loc, list) and len(loc) >= 3 and loc[:2] == ["body", "results"]
                    and type(loc[2]) is int and 0 <= loc[2] < count):
                where = ".".join(str(part) for part in loc[3:]) or "result"
                found.setdefault(loc[2], []).append(f"{where}: {str(problem.get('msg'))[:200]}")
    return {i: "; ".join(reasons) for i, reasons in found.items()}


def _single_status(resp: httpx.Response) -> str | None:
    if resp.status_code == 409:
        return "duplicate"
    body = _json(resp)
    status = body.get("status") if isinstance(body, dict) else None
    return status if status in ("accepted", "duplicate") else None


def _batch_statuses(resp: httpx.Response, count: int) -> list[str] | None:
    body = _json(resp)
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != count:
        return None
    statuses = [r.get("status") if isinstance(r, dict) else None for r in results]
    if not all(s in ("accepted", "duplicate") for s in statuses):
        return None
    return statuses


@dataclass
class Submitter:
    """Sends items, by batch or one by one, with retries; the client and the sleep are
    injectable. Acknowledged items go to ``progress``, every outcome into ``report``."""

    client: httpx.Client
    api_url: str
    report: SubmitReport
    token: str | None = None
    retry: RetryPolicy = SUBMIT_RETRY
    sleep: Callable[[float], None] = time.sleep
    progress: ProgressFile | None = None
    on_progress: Callable[[SubmitReport], None] | None = None
    max_bytes: int = DEFAULT_BATCH_BYTES

    def _request(self, path: str, content: bytes) -> httpx.Response | str:
        """The answer worth acting on (not a 429 or 5xx), or why it gave up retrying."""
        url = self.api_url.rstrip("/") + path
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        attempt = limited = 0
        while True:
            retry_after = None
            self.report.requests += 1
            try:
                resp = self.client.post(url, content=content, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                retry_after = parse_retry_after(resp.headers)
                if resp.status_code == 429:
                    limited += 1
                    if limited > MAX_RATE_LIMITED:
                        return f"still rate limited (HTTP 429) after {MAX_RATE_LIMITED} waits"
                    waits = min(limited, self.retry.max_attempts)
                    self.sleep(self.retry.delay(waits, retry_after))
                    continue
                if resp.status_code < 500:
                    return resp
                problem = f"HTTP {resp.status_code}: {_detail(resp)}"
            attempt += 1
            if attempt >= self.retry.max_attempts:
                return f"gave up after {attempt} attempts: {problem}"
            self.sleep(self.retry.delay(attempt, retry_after))

    def _refuse_all(self, resp: httpx.Response, path: str) -> None:
        if resp.status_code in AUTH_STATUS:
            raise SubmitRefused(f"the API refused the token: HTTP {resp.status_code}: "
                                f"{_detail(resp)}")
        if resp.status_code in (404, 405):
            raise SubmitRefused(f"no submit endpoint at {self.api_url.rstrip('/')}{path} "
                                f"(HTTP {resp.status_code}): is --api-url the API's base URL?")

    def _fail(self, items: Sequence[Item], reason: str) -> None:
        self.report.failed += len(items)
        self.report.errors.extend(f"{i.label}: {reason}" for i in items)

    def _ack(self, items: Sequence[Item], statuses: Sequence[str]) -> None:
        if self.progress is not None:
            self.progress.record(i.digest for i in items)
        dup = sum(s == "duplicate" for s in statuses)
        self.report.duplicate += dup
        self.report.accepted += len(items) - dup

    def notify(self) -> None:
        """Tell ``on_progress`` the counts so far."""
        if self.on_progress is not None:
            self.on_progress(self.report)

    def send_one(self, item: Item) -> None:
        """``POST /api/submit`` with one result."""
        resp = self._request(SUBMIT_PATH, item.body)
        if isinstance(resp, str):
            self._fail([item], resp)
        elif resp.is_success or resp.status_code == 409:
            status = _single_status(resp)
            if status is None:
                self._fail([item], f"HTTP {resp.status_code} without a submit answer: "
                                   f"{_detail(resp)}")
            else:
                self._ack([item], [status])
        else:
            self._refuse_all(resp, SUBMIT_PATH)
            # Any other 4xx: sending it again would get the same answer.
            self._fail([item], f"HTTP {resp.status_code}: {_detail(resp)}")
        self.notify()

    def send_batch(self, batch: list[Item]) -> bool:
        """``POST /api/submit/batch``; False (nothing sent) when the API has no such endpoint."""
        queue = [batch]
        while queue:
            part = queue.pop()
            body = _batch_body(part)
            if len(part) > 1 and len(body) > self.max_bytes:  # the budget shrank since
                queue += reversed(list(batches(part, len(part), lambda: self.max_bytes)))
                continue
            resp = self._request(BATCH_PATH, body)
            if isinstance(resp, str):
                self._fail(part, resp)
            elif resp.is_success:
                statuses = _batch_statuses(resp, len(part))
                if statuses is None:
                    self._fail(part, f"HTTP {resp.status_code} without a batch answer: "
                                     f"{_detail(resp)}")
                else:
                    self._ack(part, statuses)
            elif resp.status_code in (404, 405) and part is batch:
                return False
            elif resp.status_code == 413 and len(part) > 1:
                # The server (or a proxy in front) takes less than we thought: half of what it
                # refused, for this batch (split again above) and every later one.
                self.max_bytes = max(1, len(body) // 2)
                queue.append(part)
                continue
            elif resp.status_code == 422 and (refused := _refused_items(resp, len(part))):
                # All or nothing on the server: drop the items it names, send the others again.
                for index, reason in sorted(refused.items()):
                    self._fail([part[index]], f"HTTP 422: {reason}")
                rest = [item for i, item in enumerate(part) if i not in refused]
                if rest:
                    queue.append(rest)
                    continue
            else:
                self._refuse_all(resp, BATCH_PATH)
                self._fail(part, f"HTTP {resp.status_code}: {_detail(resp)}")
            self.notify()
        return True


def submit(
    rows: Iterable[Mapping[str, Any]],
    api_url: str,
    *,
    token: str | None = None,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = SUBMIT_RETRY.max_attempts,
    on_progress: Callable[[SubmitReport], None] | None = None,
    batch_size: int = MAX_BATCH_ITEMS,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    one_by_one: bool = False,
    progress: ProgressFile | None = None,
) -> SubmitReport:
    """Send every row's payload to ``api_url``; return the counts.

    Batches of ``batch_size`` through ``/api/submit/batch`` (falling back to one per request
    when the API has no batch endpoint), or one per ``/api/submit`` with ``one_by_one``. With
    ``progress``, results it holds as acknowledged are counted as ``resumed`` and not sent.
    """
    if not 1 <= batch_size <= MAX_BATCH_ITEMS:
        raise SubmitError(f"batch size must be 1-{MAX_BATCH_ITEMS}, got {batch_size}")
    report = SubmitReport()
    base = progress.base_timestamp if progress is not None else datetime.now(UTC)
    items = prepare(rows, report, base)
    report.total = len(items) + report.failed
    acked = progress.acked if progress is not None else set()
    todo = [item for item in items if item.digest not in acked]
    report.resumed = len(items) - len(todo)
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
    retry = dataclasses.replace(SUBMIT_RETRY, max_attempts=max_attempts)
    sender = Submitter(http, api_url, report, token=token, retry=retry, sleep=sleep,
                       progress=progress, on_progress=on_progress, max_bytes=max_batch_bytes)
    sender.notify()
    try:
        if one_by_one:
            for item in todo:
                sender.send_one(item)
        else:
            for batch in batches(todo, batch_size, lambda: sender.max_bytes):
                if not report.fell_back and sender.send_batch(batch):
                    continue
                report.fell_back = True  # an API without the batch endpoint: one by one
                for item in batch:
                    sender.send_one(item)
    except SubmitRefused as exc:
        report.aborted = str(exc)
    finally:
        if own:
            http.close()
    return report
