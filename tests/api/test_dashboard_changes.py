"""Issue 12 in a real headless Chromium: what changed, when it began, and is the model just down.

A model's view draws one chart per daily figure (pass rate, latency, consistency, output length,
error rate, refusal rate, cost) with the change-point marker at ``change_point.date``, shows
availability apart from the verdict, and the before/after panel from the evidence route, with
answers (untrusted model output) always as text; the compare view ranks the models that ran a
suite. The summaries are written here in their published shapes (tasks/summaries/payloads.py)
and checked against those models, so the page is tested against what the nightly publishes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api import create_app
from tasks.settings import Settings
from tasks.storage.layout import evidence_key, history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.payloads import (
    DRIFT,
    MODELS,
    DriftPayload,
    HistoryPayload,
    ModelEvidencePayload,
    ModelsPayload,
)
from tasks.summaries.publish import NIGHTLY_STATUS
from tests.api.uvicorn_server import serve_in_thread
from tests.support.cdp import Tab, open_tab, skip_without_chromium, start_chromium

pytestmark = skip_without_chromium("the dashboard test")

AS_OF = date.today() - timedelta(days=1)
DAYS = 35
CHANGE = AS_OF - timedelta(days=5)  # the drifting model's change began here
EVIL = "<img src=x onerror=\"document.title='pwned'\">"
READY = "document.body && document.body.dataset.state === 'ready'"
DETAIL_READY = "document.getElementById('detail').dataset.state === 'ready'"

# The history charts of a model's view: CSS class → the HistoryDay field it draws.
CHARTS = {
    "pass-rate-chart": "pass_rate", "latency-chart": "latency_p50_ms",
    "consistency-chart": "consistency", "output-length-chart": "output_len_mean",
    "error-rate-chart": "error_rate", "refusal-rate-chart": "refusal_rate",
    "cost-chart": "cost_usd",
}


def _days() -> list[date]:
    return [AS_OF - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]


def _history(model_id: str, new_fields: bool = True) -> dict[str, Any]:
    """35 days; from CHANGE on, the drifting model answers worse, longer and refuses more."""
    days = []
    for i, day in enumerate(_days()):
        changed = model_id == "fake/drifting" and day >= CHANGE
        d: dict[str, Any] = {
            "date": day.isoformat(), "rows": 40, "pass_rate": 0.5 if changed else 0.9,
            "score_mean": 0.9, "latency_p50_ms": 800.0 + i, "latency_p95_ms": 1500.0,
            "distinct_outputs": 12, "output_len_mean": 420.0 if changed else 240.0,
            "cost_usd": 0.01 + i / 1000, "consistency": 0.6 if changed else 0.98,
        }
        if new_fields:  # issue 12's fields: a history written before them has none
            errors = 24 if i == 10 else 1  # a one-day outage, long before the change
            d.update(errors=errors, error_rate=errors / 40,
                     refusal_rate=0.15 if changed else 0.02)
        days.append(d)
    return {"model_id": model_id, "days": days}


def _figures(suite: str, pass_rate: float, latency: float, cost: float | None) -> dict[str, Any]:
    return {"suite": suite, "rows_recent": 100, "pass_rate_recent": pass_rate,
            "latency_p50_ms": latency, "cost_usd_recent": cost}


def _model(model_id: str, verdict: str, suites: list[dict[str, Any]], **extra: Any) -> dict:
    return {
        "model_id": model_id, "last_seen": AS_OF.isoformat(), "rows_recent": 280,
        "rows_baseline": 1120, "pass_rate_recent": 0.9, "pass_rate_baseline": 0.9,
        "consistency": 0.98, "consistency_band": "stable", "verdict": verdict, "reasons": [],
        "significant_tests": 0, "suites": sorted(f["suite"] for f in suites),
        "suite_figures": suites, **extra,
    }


def _models() -> list[dict[str, Any]]:
    drifting = _model(
        "fake/drifting", "drifting",
        [_figures("smoke", 0.5, 250.0, 1.0), _figures("math", 0.7, 1200.0, 2.0)],
        change_point={"date": CHANGE.isoformat(),
                      "earliest": (CHANGE - timedelta(days=1)).isoformat(),
                      "latest": (CHANGE + timedelta(days=2)).isoformat(), "metric": "pass_rate"},
        evidence_url="/api/models/fake/drifting/evidence",
        availability={"status": "ok", "error_rate_recent": 0.025, "error_rate_baseline": 0.04,
                      "top_error": EVIL, "reasons": []},
    )
    down = _model("fake/flaky", "stable", [_figures("smoke", 0.95, 300.0, 0.5)],
                  availability={"status": "degraded", "error_rate_recent": 0.6,
                                "error_rate_baseline": 0.01,
                                "top_error": "HTTP 503: upstream overloaded",
                                "reasons": ["error rate 1.0% → 60.0%, adjusted p=1e-12"]})
    # Published by a nightly older than issue 12: none of its new fields.
    old = {k: v for k, v in _model("fake/stable", "stable", [_figures("smoke", 0.9, 600.0, None)])
           .items() if k != "suite_figures"}
    return [drifting, down, old]


def _evidence() -> dict[str, Any]:
    """The before/after of fake/drifting, in the evidence route's shape (CONTRACTS17.md)."""
    def answer(output: str, passed: bool, day: date, count: int) -> dict[str, Any]:
        return {"output": output, "passed": passed, "score": 1.0 if passed else 0.0,
                "latency_ms": 812.0, "date": day.isoformat(), "count": count}

    base_day, recent_day = AS_OF - timedelta(days=20), AS_OF - timedelta(days=1)
    return {
        "model_id": "fake/drifting", "generated_at": datetime.now(UTC).isoformat(),
        "prompts": [
            {"prompt_id": "math-001", "suite": "smoke", "metric": "pass_rate",
             "p_adjusted": 0.00012,
             "baseline": answer("The answer is 4.", True, base_day, 27),
             "recent": answer(f"The answer is 5. {EVIL}", False, recent_day, 6),
             "diff": [{"op": "equal", "text": "The answer is "},
                      {"op": "delete", "text": "4."},
                      {"op": "insert", "text": f"5. {EVIL}"}]},
            {"prompt_id": "capital-002", "suite": "smoke", "metric": "output_len",
             "p_adjusted": 0.004,
             "baseline": answer("Paris", True, base_day, 28),
             "recent": answer("The capital of France is Paris.", True, recent_day, 7),
             "diff": [{"op": "insert", "text": "The capital of France is "},
                      {"op": "equal", "text": "Paris"}, {"op": "insert", "text": "."}]},
        ],
    }


def _drift(window: dict[str, Any]) -> dict[str, Any]:
    """drift.json: a significant refusal-rate and meaning test of fake/drifting; the semantic
    metric's status says it was skipped (as on a machine without the embeddings extra)."""
    def test(metric: str, name: str, measure: str, recent: float, baseline: float) -> dict:
        return {"evidence": "project", "model_id": "fake/drifting", "suite": None,
                "prompt_id": None, "level": "model", "metric": metric, "test": name,
                "statistic": 3.1, "p_value": 1e-6, "p_adjusted": 4e-6, "effect_size": 0.13,
                "effect_measure": measure, "min_effect": 0.05, "n_recent": 280,
                "n_baseline": 1120, "recent_value": recent, "baseline_value": baseline,
                "ci_recent": None, "consistency_band": None, "bh_weight": 1.0,
                "significant": True}

    return {"generated_at": datetime.now(UTC).isoformat(), "window": window,
            "config": {"alpha": 0.05, "min_cliffs_delta": 0.147, "min_rate_difference": 0.05,
                       "min_consistency_drop": 0.05, "min_semantic_score": 3.0,
                       "level_shares": [0.5, 0.3, 0.2]},
            "semantic": {"status": "skipped", "reason": f"the embeddings extra {EVIL}",
                         "encoder": None, "embedded": 0, "reused": 0},
            "tests": [test("refusal_rate", "fisher", "rate_difference", 0.15, 0.02),
                      test("semantic", "worst_day_t", "standard_score", 4.2, 0.0)],
            "community_tests": []}


def write_published(store: LocalStore) -> None:
    """models.json, the histories and fake/drifting's evidence, each validated against its
    payload model first."""
    window = {"as_of": AS_OF.isoformat(), "recent_days": 7, "baseline_days": 28,
              "recent_start": (AS_OF - timedelta(days=6)).isoformat(),
              "baseline_start": (AS_OF - timedelta(days=34)).isoformat(),
              "baseline_end": (AS_OF - timedelta(days=7)).isoformat()}
    models = {"generated_at": datetime.now(UTC).isoformat(), "window": window, "models": _models()}
    ModelsPayload.model_validate(models)
    store.put(latest_key(MODELS), json.dumps(models).encode())
    for model_id in ("fake/drifting", "fake/flaky", "fake/stable"):
        history = _history(model_id, new_fields=model_id != "fake/stable")
        HistoryPayload.model_validate(history)
        store.put(history_key(model_id), json.dumps(history).encode())
    drift = _drift(window)
    DriftPayload.model_validate(drift)
    store.put(latest_key(DRIFT), json.dumps(drift).encode())
    evidence = {**_evidence(), "window": window}
    ModelEvidencePayload.model_validate(evidence)
    store.put(evidence_key("fake/drifting"), json.dumps(evidence).encode())
    store.put(latest_key(NIGHTLY_STATUS),
              json.dumps({"finished_at": datetime.now(UTC).isoformat()}).encode())


def _app(store: LocalStore, tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path / "data"), store)


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[str, str]]:
    with start_chromium() as started:
        yield started


@pytest.fixture
def tab(browser: tuple[str, str]) -> Iterator[Tab]:
    with open_tab(browser, ready=READY) as opened:
        yield opened


@pytest.fixture
def base(store: LocalStore, tmp_path: Path) -> Iterator[str]:
    write_published(store)
    with serve_in_thread(_app(store, tmp_path)) as url:
        yield url


def _open_model(tab: Tab, base: str, model_id: str) -> None:
    tab.open(f"{base}/#model={model_id.replace('/', '%2F')}")
    tab.wait_for(f"{DETAIL_READY} && document.getElementById('detail').dataset.modelId"
                 f" === {json.dumps(model_id)}")


# ------------------------------------------------------------------------------------ the tests


def test_every_history_chart_has_a_point_per_day_and_the_change_marker(
    tab: Tab, base: str
) -> None:
    _open_model(tab, base, "fake/drifting")
    charts = tab.js("""(() => { const out = {};
      for (const svg of document.querySelectorAll('#history svg.line-chart')) {
        const cls = [...svg.classList].find(c => c.endsWith('-chart') && c !== 'line-chart');
        const marker = svg.querySelector('g.change-point');
        const line = marker && marker.querySelector('line.change-line');
        const dot = [...svg.querySelectorAll('circle')].find(
          c => c.querySelector('title').textContent.startsWith(marker && marker.dataset.date));
        out[cls] = {points: svg.querySelectorAll('circle').length,
          marker: marker && [marker.dataset.date, marker.dataset.earliest, marker.dataset.latest],
          line_x: line && Number(line.getAttribute('x1')),
          dot_x: dot && Number(dot.getAttribute('cx')),
          band: Boolean(marker && marker.querySelector('rect.change-band')),
          label: svg.getAttribute('aria-label')};
      } return out; })()""")
    note = tab.js("document.getElementById('change-point').innerText")
    detail = tab.js("document.getElementById('detail').innerText")
    assert set(charts) == set(CHARTS)
    expected = [CHANGE.isoformat(), (CHANGE - timedelta(days=1)).isoformat(),
                (CHANGE + timedelta(days=2)).isoformat()]
    for cls, c in charts.items():
        assert c["points"] == DAYS, cls
        assert c["marker"] == expected, cls
        # The line stands on the change day's own point, inside the band of possible days.
        assert c["line_x"] == pytest.approx(c["dot_x"], abs=0.11), cls
        assert c["band"], cls
        assert f"change began on or about {CHANGE.isoformat()}" in c["label"], cls
    assert f"Change began on or about {CHANGE.isoformat()}" in note
    assert not {"null", "undefined", "NaN"} & set(detail.split())
    assert tab.errors == []


def test_values_of_the_new_series_are_the_published_ones(tab: Tab, base: str) -> None:
    _open_model(tab, base, "fake/drifting")
    titles = tab.js("""Object.fromEntries([...document.querySelectorAll('#history svg.line-chart')]
      .map(s => [[...s.classList].find(c => c.endsWith('-chart') && c !== 'line-chart'),
                 [...s.querySelectorAll('circle title')].map(t => t.textContent)]))""")
    outage = (AS_OF - timedelta(days=DAYS - 1 - 10)).isoformat()
    assert f"{outage}: 60.0%" in titles["error-rate-chart"]
    assert f"{AS_OF.isoformat()}: 15.0%" in titles["refusal-rate-chart"]
    assert f"{_days()[0].isoformat()}: 2.0%" in titles["refusal-rate-chart"]
    assert f"{AS_OF.isoformat()}: 420 chars" in titles["output-length-chart"]
    assert f"{AS_OF.isoformat()}: 60.0%" in titles["consistency-chart"]
    assert f"{AS_OF.isoformat()}: $0.044" in titles["cost-chart"]
    assert tab.errors == []


def test_before_after_panel_shows_answers_and_the_word_diff_as_text(tab: Tab, base: str) -> None:
    _open_model(tab, base, "fake/drifting")
    panel = tab.js("""(() => { const p = document.getElementById('before-after');
      return {text: p.innerText,
        prompts: [...p.querySelectorAll('.evidence-prompt')].map(a => a.dataset.promptId),
        results: [...p.querySelectorAll('.result')].map(r => r.textContent),
        ins: [...p.querySelectorAll('pre.diff ins')].map(e => e.textContent),
        del: [...p.querySelectorAll('pre.diff del')].map(e => e.textContent),
        recent: p.querySelector('.answer-recent pre.output').textContent}; })()""")
    imgs = tab.js("document.querySelectorAll('img').length")
    title = tab.js("document.title")
    top_error = tab.js("document.getElementById('top-error').textContent")
    drift = tab.js("document.getElementById('drift-tests').innerText")
    assert panel["prompts"] == ["math-001", "capital-002"]
    assert panel["results"][:2] == ["passed", "failed"]  # baseline, recent of math-001
    assert "The answer is 4." in panel["text"]
    assert panel["recent"] == f"The answer is 5. {EVIL}"  # the hostile output, as text
    assert panel["del"] == ["[removed: 4.]"]
    assert panel["ins"][0] == f"[added: 5. {EVIL}]"
    assert panel["ins"][1:] == ["[added: The capital of France is ]", "[added: .]"]
    assert "seen 27 times" in panel["text"] and "seen 6 times" in panel["text"]
    assert (AS_OF - timedelta(days=20)).isoformat() in panel["text"]
    assert "adjusted p 0.0001" in panel["text"]
    assert top_error == EVIL  # the provider's error message: text too
    # drift.json: the new metrics named for people; the skipped semantic metric said, as text.
    assert "Refusal rate" in drift and "Meaning (semantic)" in drift
    assert "Worst-day t" in drift and "15.0%" in drift and "2.0%" in drift
    assert f"Meaning drift (semantic) was not tested this night: the embeddings extra {EVIL}" \
        in drift
    assert imgs == 0 and title != "pwned"
    assert tab.errors == []


def test_availability_is_shown_apart_from_the_verdict(tab: Tab, base: str) -> None:
    _open_model(tab, base, "fake/flaky")
    heading = tab.js("document.getElementById('detail-heading').innerText")
    avail = tab.js("document.getElementById('availability').innerText")
    status = tab.js("document.querySelector('#availability [data-availability]')"
                    ".dataset.availability")
    evidence = tab.js("document.getElementById('evidence-none').innerText")
    fetched = [u for u in tab.requests if u.endswith("/evidence")]
    assert "Stable" in heading  # the quality verdict is unchanged by the outage
    assert status == "degraded" and "Degraded" in avail
    assert "60.0%" in avail and "1.0%" in avail
    assert "HTTP 503: upstream overloaded" in avail
    assert "never change the verdict" in avail
    # Stable, and models.json names no evidence: the route is not even asked.
    assert "only for models on watch or drifting" in evidence and fetched == []
    assert tab.errors == []


def test_an_older_summary_renders_no_data_not_errors(tab: Tab, base: str) -> None:
    """fake/stable was written before issue 12: no availability, change point, evidence or
    error/refusal series. Each part says so; nothing breaks."""
    _open_model(tab, base, "fake/stable")
    empty = tab.js("[...document.querySelectorAll('#history figure')].filter(f =>"
                   " f.querySelector('.chart-empty')).map(f => f.dataset.field)")
    drawn = tab.js("document.querySelectorAll('#history svg.line-chart').length")
    markers = tab.js("document.querySelectorAll('g.change-point').length")
    avail = tab.js("document.getElementById('availability-none').innerText")
    assert sorted(empty) == ["error_rate", "refusal_rate"]
    assert drawn == len(CHARTS) - 2
    assert markers == 0 and tab.js("document.getElementById('change-point')") is None
    # Absent parts leave nothing behind: no "null", "undefined" or "NaN" written as text.
    detail = tab.js("document.getElementById('detail').innerText")
    assert not {"null", "undefined", "NaN"} & set(detail.split())
    assert "No availability data" in avail
    assert tab.errors == []


def test_compare_view_ranks_the_models_of_a_suite(tab: Tab, base: str) -> None:
    tab.open(base + "/")

    def ranked() -> list[list[str]]:
        return tab.js("[...document.querySelectorAll('#compare-table tr.compare-row')].map(r =>"
                      " [r.dataset.rank, r.dataset.modelId, r.querySelector('.badge').dataset"
                      ".verdict])")

    def choose(select: str, value: str) -> None:
        tab.js(f"(() => {{ const s = document.getElementById({json.dumps(select)});"
               f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")

    # The models table: only fake/flaky's outage shows, beside (not instead of) its verdict.
    degraded = tab.js("[...document.querySelectorAll('#models-table tr')].filter(r =>"
                      " r.querySelector('[data-availability=degraded]')).map(r =>"
                      " [r.dataset.modelId, r.querySelector('.badge').dataset.verdict])")
    suites = tab.js("[...document.getElementById('compare-suite').options].map(o => o.value)")
    by_pass = ranked()
    text = tab.js("document.getElementById('compare').innerText")
    choose("compare-rank", "latency")
    by_latency = ranked()
    choose("compare-rank", "cost")
    by_cost = ranked()
    choose("compare-suite", "math")
    math = ranked()
    tab.click('#compare-table a[href="#model=fake%2Fdrifting"]')
    tab.wait_for(f"{DETAIL_READY} && document.getElementById('detail').dataset.modelId"
                 " === 'fake/drifting'")
    assert degraded == [["fake/flaky", "stable"]]
    assert suites == ["smoke", "math"]  # most-run first
    assert by_pass == [["1", "fake/flaky", "stable"], ["2", "fake/stable", "stable"],
                       ["3", "fake/drifting", "drifting"]]
    assert "95.0%" in text and "300 ms" in text and "$0.005" in text  # fake/flaky's smoke
    assert "null" not in text and "undefined" not in text
    # fake/stable's summary is older than per-suite figures: no latency or cost, ranked last.
    assert [r[1] for r in by_latency] == ["fake/drifting", "fake/flaky", "fake/stable"]
    assert [r[1] for r in by_cost] == ["fake/flaky", "fake/drifting", "fake/stable"]
    assert math == [["1", "fake/drifting", "drifting"]]
    assert tab.errors == []
