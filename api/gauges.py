"""The gauges ``/metrics`` reads at scrape time: the spool's backlog, the last nightly's counts
(``nightly.json``) and a verdict, pass rate and row count per published model (``models.json``).

Model ids and provider names come only from those published files, never from a request, and
at most ``max_models`` of each get series of their own (community submissions feed models.json).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.spool import Spool
from api.summaries import Summary, SummaryCache
from tasks import __version__
from tasks.storage.layout import latest_key
from tasks.summaries.payloads import (
    MODELS,
    NIGHTLY_STATUS,
    ModelsPayload,
    ModelSummary,
    NightlyStatus,
    Verdict,
    parse_summary,
)

log = logging.getLogger(__name__)

VERDICTS: tuple[str, ...] = get_args(Verdict)
WINDOWS = ("recent", "baseline")
# What a scrape reads; plumbline_scrape_source_ok says which of them it could.
SOURCES = ("spool", "nightly", "models")


@dataclass(frozen=True, slots=True)
class SummarySnapshot:
    """The published summaries as one scrape sees them; None when missing or unreadable."""

    nightly: NightlyStatus | None = None
    models: ModelsPayload | None = None
    failed: frozenset[str] = field(default_factory=frozenset)  # of SOURCES


class SummaryReader:
    """Reads nightly.json and models.json for a scrape, through the app's summary cache (a
    remote store is fetched at most once per cache period however often Prometheus scrapes),
    and keeps the last parse of each by ETag (models.json is parsed again only when the nightly
    published a new one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[str, Any]] = {}

    def _parse(self, model: type[Any], summary: Summary, key: str) -> Any:
        with self._lock:
            hit = self._parsed.get(key)
        if hit is not None and hit[0] == summary.etag:
            return hit[1]
        value = parse_summary(model, summary.body, key)
        with self._lock:
            self._parsed[key] = (summary.etag, value)
        return value

    async def read(self, summaries: SummaryCache) -> SummarySnapshot:
        found: dict[str, Any] = {}
        failed = set()
        for source, name, model in (("nightly", NIGHTLY_STATUS, NightlyStatus),
                                    ("models", MODELS, ModelsPayload)):
            key = latest_key(name)
            try:
                found[source] = self._parse(model, await summaries.get(key), key)
            except KeyError:
                continue  # not published yet: no gauges, and nothing is wrong
            except Exception as exc:  # unreachable store or a file that does not parse
                log.warning("metrics: cannot read %s: %s", key, exc)
                failed.add(source)
        return SummarySnapshot(found.get("nightly"), found.get("models"), frozenset(failed))


def _gauge(name: str, doc: str, value: float | None = None,
           labels: Sequence[str] = ()) -> GaugeMetricFamily:
    if labels:
        return GaugeMetricFamily(name, doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, value=value)


class ScrapeCollector(Collector):
    """The gauges read at scrape time: spool backlog, the last nightly, the published models."""

    def __init__(self, snapshot: SummarySnapshot, spool: Spool, max_models: int,
                 now: float) -> None:
        self.snapshot = snapshot
        self.spool = spool
        self.max_models = max_models
        self.now = now

    def collect(self) -> Iterator[Metric]:
        info = _gauge("plumbline_build_info", "Always 1; the version serving.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        failed = set(self.snapshot.failed)
        try:
            pending = self.spool.pending_count()
            oldest = self.spool.oldest_pending_age()
        except Exception as exc:  # a broken spool must not cost the scrape its other metrics
            log.warning("metrics: cannot read the spool: %s", exc)
            failed.add("spool")
        else:
            yield _gauge("plumbline_spool_pending_rows",
                         "Submissions acknowledged and not yet flushed to the store.", pending)
            yield _gauge("plumbline_spool_oldest_pending_age_seconds",
                         "Age of the oldest pending submission (0 when none waits).",
                         oldest or 0.0)
        ok = _gauge("plumbline_scrape_source_ok",
                    "1 when the scrape could read this source (a summary not published yet "
                    "counts as read), else 0.", labels=["source"])
        for source in SOURCES:
            ok.add_metric([source], 0 if source in failed else 1)
        yield ok
        if self.snapshot.nightly is not None:
            yield from self._nightly(self.snapshot.nightly)
        if self.snapshot.models is not None:
            yield from self._models(self.snapshot.models.models)

    def _nightly(self, status: NightlyStatus) -> Iterator[Metric]:
        finished = status.finished_at.timestamp()
        yield _gauge("plumbline_nightly_finished_timestamp_seconds",
                     "When the last nightly run finished (Unix time).", finished)
        yield _gauge("plumbline_nightly_age_seconds",
                     "Seconds since the last nightly run finished.", max(0.0, self.now - finished))
        plain = {
            "days": "Days of raw data in the store at the last nightly.",
            "aggregated_days": "Days the last nightly (re)aggregated.",
            "summary_rows": "Daily summary rows the last nightly wrote.",
            "rows_aggregated": "Raw rows in the days the last nightly (re)aggregated.",
            "tests": "Drift tests the last nightly ran.",
        }
        for name, doc in plain.items():
            value = getattr(status, name)
            if value is not None:
                yield _gauge(f"plumbline_nightly_{name}", doc, value)
        if status.verdicts is not None:
            models = _gauge("plumbline_nightly_models",
                            "Models per verdict at the last nightly.", labels=["verdict"])
            for verdict in VERDICTS:  # a verdict this version does not know is left out
                models.add_metric([verdict], status.verdicts.get(verdict, 0))
            yield models
        if status.provider_calls is not None:
            yield from self._providers(status)

    def _providers(self, status: NightlyStatus) -> Iterator[Metric]:
        calls = status.provider_calls or {}
        rows = sum(c.rows for c in calls.values())
        errors = sum(c.errors for c in calls.values())
        yield _gauge("plumbline_nightly_window_rows",
                     "Rows (calls) in the recent drift window, every provider.", rows)
        yield _gauge("plumbline_nightly_window_errors",
                     "Failed calls in the recent drift window, every provider.", errors)
        if rows:
            yield _gauge("plumbline_nightly_error_rate",
                         "Failed calls over calls in the recent window, every provider.",
                         errors / rows)
        # Provider names come from published model ids: bounded like the models below.
        busiest = sorted(calls.items(), key=lambda kv: (-kv[1].rows, kv[0]))[:self.max_models]
        p_rows = _gauge("plumbline_nightly_provider_rows",
                        "Rows (calls) per provider in the recent drift window.",
                        labels=["provider"])
        p_errors = _gauge("plumbline_nightly_provider_errors",
                          "Failed calls per provider in the recent drift window.",
                          labels=["provider"])
        p_rate = _gauge("plumbline_nightly_provider_error_rate",
                        "Failed calls over calls per provider in the recent drift window.",
                        labels=["provider"])
        for provider, c in busiest:
            p_rows.add_metric([provider], c.rows)
            p_errors.add_metric([provider], c.errors)
            if c.rows:
                p_rate.add_metric([provider], c.errors / c.rows)
        yield from (p_rows, p_errors, p_rate)

    def _models(self, published: list[ModelSummary]) -> Iterator[Metric]:
        # The models with the most recent rows keep their series; the rest are counted.
        kept = sorted(published, key=lambda m: (-m.rows_recent, m.model_id))[:self.max_models]
        yield _gauge("plumbline_models_omitted",
                     "Published models without gauges of their own (over METRICS_MAX_MODELS).",
                     len(published) - len(kept))
        verdict = _gauge("plumbline_model_verdict",
                         "1 for the model's current verdict, 0 for the others.",
                         labels=["model_id", "verdict"])
        pass_rate = _gauge("plumbline_model_pass_rate",
                           "Passes over scored rows (absent when nothing was scored).",
                           labels=["model_id", "window"])
        rows = _gauge("plumbline_model_rows", "Rows of the model in the drift window.",
                      labels=["model_id", "window"])
        for m in sorted(kept, key=lambda m: m.model_id):
            for v in VERDICTS:
                verdict.add_metric([m.model_id, v], 1 if m.verdict == v else 0)
            for window, rate, n in (("recent", m.pass_rate_recent, m.rows_recent),
                                    ("baseline", m.pass_rate_baseline, m.rows_baseline)):
                rows.add_metric([m.model_id, window], n)
                if rate is not None:
                    pass_rate.add_metric([m.model_id, window], rate)
        yield from (verdict, pass_rate, rows)
