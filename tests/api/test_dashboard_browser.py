"""The dashboard in a real headless Chromium against the real app under uvicorn.

The browser is driven over the Chrome DevTools Protocol (tests/support/cdp.py; one browser for
the module, one tab per test): the page's own JavaScript fetches the API, renders, and reacts to
real mouse clicks and key presses. Skipped, with the reason, when no Chromium is installed (CI
installs Debian's ``chromium``).

Longer than 400 lines: the browser scenarios share one Chromium per module (split, each part would
start its own, about a second each), and the summaries they render are written here, next to the
assertions that read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from api import create_app
from api.routes.dashboard import STATIC_DIR
from tasks.settings import Settings
from tasks.storage.layout import history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.publish import CHART, NIGHTLY_STATUS
from tests.api.uvicorn_server import serve_in_thread
from tests.support.cdp import Tab, open_tab, skip_without_chromium, start_chromium

pytestmark = skip_without_chromium("the dashboard test")


# ------------------------------------------------------------------------------------ the data

AS_OF = date.today() - timedelta(days=1)
RECENT_DAYS, BASELINE_DAYS = 7, 28
VERDICTS = {
    "openai/gpt-4o": "drifting",
    "anthropic/claude-sonnet-4-5": "watch",
    "fake/stable": "stable",
    "fake/newcomer": "insufficient_data",
}


def _window() -> dict[str, Any]:
    return {"as_of": AS_OF.isoformat(), "recent_days": RECENT_DAYS, "baseline_days": BASELINE_DAYS}


def _days(n: int) -> list[date]:
    return [AS_OF - timedelta(days=n - 1 - i) for i in range(n)]


def _history(model_id: str) -> dict[str, Any]:
    """35 days; the drifting model loses pass rate and gains latency in the recent window."""
    days = []
    for i, day in enumerate(_days(35)):
        recent = i >= 35 - RECENT_DAYS
        drifting = model_id == "openai/gpt-4o" and recent
        days.append({
            "date": day.isoformat(), "rows": 40 + i % 5,
            "pass_rate": (0.62 if drifting else 0.91) + (i % 3) * 0.01,
            "score_mean": 0.9, "latency_p50_ms": (1450.0 if drifting else 820.0) + (i % 4) * 15,
            "latency_p95_ms": 2100.0, "distinct_outputs": 12, "output_len_mean": 240.5,
            "cost_usd": 0.0132, "consistency": 0.71 if drifting else 0.98,
        })
    return {"model_id": model_id, "days": days}


# Community submissions say fake/stable moved; the project's own runs say it did not.
COMMUNITY = {
    "evidence": "community", "rows_recent": 350, "rows_baseline": 1400,
    "pass_rate_recent": 0.41, "pass_rate_baseline": 0.9, "consistency": 0.97,
    "consistency_band": "stable", "verdict": "drifting",
    "reasons": ["smoke: pass rate 0.90 → 0.41, adjusted p=1e-09"], "significant_tests": 1,
    "suites": ["smoke"],
}


def _community_days() -> list[dict[str, Any]]:
    return [{**day, "evidence": "community", "rows": 50, "pass_rate": 0.41}
            for day in _history("fake/stable")["days"][-3:]]


def _drift_tests() -> list[dict[str, Any]]:
    def test(model_id: str, metric: str, significant: bool, p: float, **kw: Any) -> dict[str, Any]:
        return {
            "model_id": model_id, "suite": "smoke", "prompt_id": kw.get("prompt_id"),
            "metric": metric, "test": kw.get("test", "fisher"), "statistic": 3.2,
            "p_value": p / 4, "p_adjusted": p, "effect_size": kw.get("effect", -0.29),
            "effect_measure": kw.get("measure", "rate_difference"), "n_recent": 280,
            "n_baseline": 1120, "recent_value": kw.get("recent", 0.62),
            "baseline_value": kw.get("baseline", 0.91), "ci_recent": [0.56, 0.68],
            "significant": significant,
        }

    return [
        test("openai/gpt-4o", "pass_rate", True, 0.00002),
        test("openai/gpt-4o", "latency_ms", True, 0.003, test="mannwhitneyu", effect=0.61,
             measure="cliffs_delta", recent=1460.0, baseline=830.0),
        test("openai/gpt-4o", "consistency", True, 0.01, test="consistency", effect=0.27,
             measure="consistency_drop", recent=0.71, baseline=0.98),
        test("openai/gpt-4o", "output_len", False, 0.41, prompt_id="math-007",
             test="mannwhitneyu", measure="cliffs_delta", effect=0.04),
        test("anthropic/claude-sonnet-4-5", "pass_rate", False, 0.08),
        test("fake/stable", "pass_rate", False, 0.93),
    ]


def write_summaries(store: LocalStore) -> None:
    """What a nightly run materializes, at the keys the read API serves."""
    now = datetime.now(UTC).isoformat()
    chart_models = sorted(VERDICTS)
    data = []
    for i, day in enumerate(_days(35)):
        row: dict[str, Any] = {"date": day.isoformat()}
        for j, model in enumerate(chart_models):
            if model == "fake/newcomer" and i < 33:
                continue  # first seen two days ago
            if i % 6 != j:  # a few gaps: days without rows must show as empty, not break
                row[model] = 30 + (i * 7 + j * 11) % 25
        data.append(row)
    total = sum(v for row in data for k, v in row.items() if k != "date")
    put = store.put
    put(latest_key(CHART), json.dumps(
        {"data": data, "models": chart_models, "total_submissions": total}).encode())
    models = []
    for model_id, verdict in VERDICTS.items():
        few, drifting = verdict == "insufficient_data", verdict == "drifting"
        hist = _history(model_id)["days"]
        models.append({
            "model_id": model_id, "last_seen": AS_OF.isoformat(),
            "rows_recent": 60 if few else 280, "rows_baseline": 0 if few else 1120,
            "pass_rate_recent": 0.62 if verdict == "drifting" else 0.9,
            "pass_rate_baseline": None if few else 0.91,
            "consistency": None if few else hist[-1]["consistency"],
            "consistency_band": None if few else ("drifting" if drifting else "stable"),
            "verdict": verdict, "suites": ["smoke"],
            "community": COMMUNITY if model_id == "fake/stable" else None,
        })
    put(latest_key("models.json"), json.dumps(
        {"generated_at": now, "window": _window(), "models": models}).encode())
    community_test = {**_drift_tests()[0], "evidence": "community", "model_id": "fake/stable",
                      "recent_value": 0.41, "baseline_value": 0.9, "p_adjusted": 1e-9}
    put(latest_key("drift.json"), json.dumps(
        {"generated_at": now, "window": _window(), "tests": _drift_tests(),
         "community_tests": [community_test]}).encode())
    for model_id in VERDICTS:
        history = _history(model_id)
        if model_id == "fake/stable":
            history["community_days"] = _community_days()
        put(history_key(model_id), json.dumps(history).encode())
    put(latest_key(NIGHTLY_STATUS), json.dumps({"finished_at": now}).encode())


# ------------------------------------------------------------------------ server and browser


# What `tab.open` waits for: the page has fetched and rendered everything.
READY = "document.body && document.body.dataset.state === 'ready'"


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[str, str]]:
    """A headless Chromium, started once: yields (DevTools host:port, its browser ws url)."""
    with start_chromium() as started:
        yield started


@pytest.fixture
def tab(browser: tuple[str, str]) -> Iterator[Tab]:
    with open_tab(browser, ready=READY) as opened:
        yield opened


def _app(store: LocalStore, tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path / "data"), store)


def _artifact(tmp_path: Path, name: str) -> Path:
    # PLUMBLINE_SCREENSHOTS keeps the screenshots for a person to look at.
    folder = Path(os.environ.get("PLUMBLINE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


# ------------------------------------------------------------------------------------ the tests


def test_no_summaries_shows_how_to_get_some(tab: Tab, store: LocalStore, tmp_path: Path) -> None:
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/")
        text = tab.js("document.body.innerText")
        tab.screenshot(_artifact(tmp_path, "dashboard-empty.png"))
    assert "No nightly run yet" in text
    assert "plumbline nightly" in text
    assert "No submissions stored yet" in text
    assert tab.js("document.getElementById('total-submissions').textContent") == "0"
    assert tab.js("document.getElementById('last-nightly').textContent") == "never"
    assert tab.js("document.querySelectorAll('#models tr').length") == 0
    assert tab.js("document.getElementById('load-errors')") is None  # a 404 is not an error
    assert tab.errors == []


def test_chart_is_drawn_before_the_first_nightly_run(
    tab: Tab, store: LocalStore, tmp_path: Path
) -> None:
    """Submissions already stored show in the chart even when no drift summary exists yet; and
    a model id from a community submission is shown as text, never run as markup."""
    evil = "evil/<img src=x onerror=document.title='pwned'>"
    store.put(latest_key(CHART), json.dumps({
        "data": [{"date": "2026-11-01", "fake/stable": 5, evil: 2},
                 {"date": "2026-11-04", "fake/stable": 7}],
        "models": ["fake/stable", evil], "total_submissions": 14}).encode())
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/dashboard")
        charts = tab.js("[...document.querySelectorAll('svg.submissions-chart')]"
                        ".map(s => [s.dataset.modelId, s.querySelectorAll('rect.bar').length])")
        text = tab.js("document.body.innerText")
        assert tab.js("document.getElementById('total-submissions').textContent") == "14"
        assert tab.js("document.querySelectorAll('#chart img').length") == 0
        assert tab.js("document.title") != "pwned"
    # Nov 1-4 is four days: the two without rows are drawn as empty, not skipped.
    assert sorted(charts) == sorted([["fake/stable", 2], [evil, 1]])
    assert tab.js("document.querySelector('svg[data-model-id=\"fake/stable\"]')"
                  ".getAttribute('aria-label')") \
        == "fake/stable: 12 submissions over 4 days, from 2026-11-01 to 2026-11-04, " \
           "at most 7 on 2026-11-04"
    assert evil in text
    assert "No nightly run yet" in text
    assert tab.errors == []


def test_models_show_verdicts_and_charts(tab: Tab, store: LocalStore, tmp_path: Path) -> None:
    write_summaries(store)
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/")
        rows = tab.js("[...document.querySelectorAll('#models-table tbody tr')].map(r =>"
                      " [r.dataset.modelId, r.querySelector('.badge').dataset.verdict,"
                      "  r.querySelector('.badge').textContent,"
                      "  getComputedStyle(r.querySelector('.badge')).color])")
        charts = tab.js("[...document.querySelectorAll('svg.submissions-chart')]"
                        ".map(s => s.dataset.modelId)")
        header = tab.js("document.querySelector('.facts').innerText")
        dom = tab.dom()
        tab.screenshot(_artifact(tmp_path, "dashboard.png"))
        tab.open(base + "/", width=390, height=844)  # a phone: the table becomes cards
        narrow_ok = tab.js("document.documentElement.scrollWidth <= 390")
        tab.screenshot(_artifact(tmp_path, "dashboard-phone.png"))
    # Most worrying first, each with its own badge.
    assert [r[0] for r in rows] == list(VERDICTS)
    assert {r[0]: r[1] for r in rows} == VERDICTS
    assert [r[2] for r in rows] == ["Drifting", "Watch", "Stable", "Insufficient data"]
    red, amber, green, grey = (tuple(int(c) for c in r[3][4:-1].split(",")) for r in rows)
    assert red[0] > 150 and red[1] < 80, red
    assert amber[0] > 100 and amber[2] < 40, amber
    assert green[1] > red[1] and green[0] < 80, green
    assert max(grey) - min(grey) < 30, grey
    assert sorted(charts) == sorted(VERDICTS)
    assert "62.0%" in dom and "91.0%" in dom  # the drifting model: pass rate now vs baseline
    assert "▼ 29.0 pp" in dom
    assert "No nightly run yet" not in dom
    assert "last 7 days vs previous 28" in header
    assert "min ago" in header or "just now" in header
    assert narrow_ok
    assert tab.errors == []


def test_clicking_a_model_shows_its_history_and_drift(
    tab: Tab, store: LocalStore, tmp_path: Path
) -> None:
    write_summaries(store)
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/")
        assert tab.js("document.getElementById('detail').hidden") is True
        tab.click('button.model-button[data-model-id="openai/gpt-4o"]')
        tab.wait_for("document.getElementById('detail').dataset.state === 'ready'")
        detail = tab.js("document.getElementById('detail').innerText")
        drift_rows = tab.js("[...document.querySelectorAll('#detail tr.drift-row')]"
                            ".map(r => r.dataset.metric)")
        points = tab.js("document.querySelectorAll('#detail svg.pass-rate-chart circle').length")
        latency_line = tab.js("document.querySelector('#detail svg.latency-chart path')"
                              ".getAttribute('d').length")
        url_hash = tab.js("location.hash")
        focused = tab.js("document.activeElement.id")
        tab.screenshot(_artifact(tmp_path, "dashboard-detail.png"))

        # Keyboard only: Escape closes the panel and returns focus to the model's button;
        # Enter on another model's button opens that one.
        tab.press("Escape", 27)
        tab.wait_for("document.getElementById('detail').hidden")
        assert tab.js("document.activeElement.dataset.modelId") == "openai/gpt-4o"
        tab.js("document.querySelector('button.model-button[data-model-id=\"fake/stable\"]')"
               ".focus()")
        tab.press("Enter", 13, text="\r")
        tab.wait_for("document.getElementById('detail').dataset.state === 'ready'"
                     " && document.getElementById('detail').dataset.modelId === 'fake/stable'")
        stable_detail = tab.js("document.getElementById('detail').innerText")

        # A shared link opens straight on a model.
        tab.open(base + "/#model=anthropic%2Fclaude-sonnet-4-5")
        tab.wait_for("document.getElementById('detail').dataset.state === 'ready'")
        linked = tab.js("document.getElementById('detail-heading').innerText")
    assert url_hash == "#model=openai%2Fgpt-4o"
    assert focused == "detail-heading"
    assert "openai/gpt-4o" in detail and "Drifting" in detail
    assert points == 35
    assert latency_line > 100
    # Significant ones only, smallest adjusted p first, named for people.
    assert drift_rows == ["pass_rate", "latency_ms", "consistency"]
    assert "3 of 4 tests significant" in detail
    assert "Fisher's exact" in detail and "Mann–Whitney U" in detail
    assert "71.0%" in detail and "98.0%" in detail
    assert "output_len" not in detail
    assert "1,460 ms" in detail and "830 ms" in detail
    assert "None: 1 test run for this model" in stable_detail
    assert "anthropic/claude-sonnet-4-5" in linked and "Watch" in linked
    assert tab.errors == []


def test_community_evidence_is_labelled_and_apart_from_the_verdict(
    tab: Tab, store: LocalStore, tmp_path: Path
) -> None:
    """Issue 16, item 2: the community says fake/stable drifts, the project's runs say stable.
    The model's verdict stays the project's; the community's shows beside it, labelled."""
    write_summaries(store)
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/")
        row = tab.js("(() => { const r = document.querySelector("
                     "  'tr[data-model-id=\"fake/stable\"]');"
                     " return [r.querySelector('.badge').dataset.verdict,"
                     "  r.querySelector('.evidence-community').innerText,"
                     "  r.querySelector('.evidence-community .badge').dataset.verdict]; })()")
        others = tab.js("document.querySelectorAll('#models-table .evidence-community').length")
        tab.click('button.model-button[data-model-id="fake/stable"]')
        tab.wait_for("document.getElementById('detail').dataset.state === 'ready'")
        heading = tab.js("document.getElementById('detail-heading').innerText")
        community = tab.js("document.getElementById('community').innerText")
        project_drift = tab.js("document.getElementById('drift-tests').innerText")
        community_rows = tab.js("document.querySelectorAll('#community tr.community-drift-row')"
                                ".length")
        project_rows = tab.js("document.querySelectorAll('#detail tr.drift-row').length")
        tab.screenshot(_artifact(tmp_path, "dashboard-community.png"))
        tab.click('button.model-button[data-model-id="openai/gpt-4o"]')
        tab.wait_for("document.getElementById('detail').dataset.modelId === 'openai/gpt-4o'"
                     " && document.getElementById('detail').dataset.state === 'ready'")
        none = tab.js("document.getElementById('community').innerText")
    assert row[0] == "stable"  # the model's verdict: its own runs
    assert row[2] == "drifting" and "COMMUNITY" in row[1].upper()
    assert others == 1
    assert "Stable" in heading and "Drifting" not in heading
    assert "Community evidence" in community and "Drifting" in community
    assert "41.0%" in community and "350 / 1,400" in community
    assert "Never part of the model's verdict" in community
    assert "1 of 1 tests significant" in community and community_rows == 1
    assert "None: 1 test run for this model" in project_drift and project_rows == 0
    assert "Show community submissions per day as a table" in community
    assert "No community submissions are counted for this model." in none
    assert tab.errors == []


def test_storage_outage_is_reported_not_hidden(
    tab: Tab, tmp_path: Path
) -> None:
    """With the store unreachable the API answers 5xx: the page says what failed and still works."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("the store root is a file, so every read fails")
    with serve_in_thread(_app(LocalStore(blocker), tmp_path)) as base:
        tab.open(base + "/")
        errors = tab.js("document.getElementById('load-errors').innerText")
        busy = tab.js("document.getElementById('main').getAttribute('aria-busy')")
    assert "Some data could not be loaded" in errors
    assert "/api/health — HTTP 503: error: StorageError" in errors  # the API's own explanation
    assert busy == "false"
    assert tab.errors == []


def test_page_loads_its_modules_and_data_from_its_own_origin_only(
    tab: Tab, store: LocalStore, tmp_path: Path
) -> None:
    """Every module is fetched from the page's own origin and served as JavaScript (a browser
    refuses a module of another type); no request leaves the origin, not even a model's history."""
    write_summaries(store)
    with serve_in_thread(_app(store, tmp_path)) as base:
        tab.open(base + "/")
        tab.click('button.model-button[data-model-id="openai/gpt-4o"]')
        tab.wait_for("document.getElementById('detail').dataset.state === 'ready'")
        requests, responses = list(tab.requests), dict(tab.responses)
    # The favicon is an inline `data:` URL: no request at all.
    foreign = [u for u in requests if not u.startswith(base + "/") and not u.startswith("data:")]
    assert foreign == []
    scripts = {u.removeprefix(base): mime for u, (kind, _, mime) in responses.items()
               if kind == "Script"}
    shipped = {"/static/" + p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js")}
    assert set(scripts) == shipped  # every module of the page, and the page loads them all
    assert set(scripts.values()) == {"text/javascript"}
    fetched = {u.removeprefix(base) for u, (kind, _, _) in responses.items() if kind == "Fetch"}
    assert fetched == {"/api/health", "/api/data/chart", "/api/models", "/api/drift",
                       "/api/models/openai/gpt-4o/history"}
    assert all(status == 200 for _, status, _ in responses.values())
    assert tab.errors == []
