"""The dashboard over a real nightly run of the demo data, in a real headless Chromium.

``plumbline demo``'s history (tests/support/demo.py: fake/stable and fake/drifting, the smoke
suite, 35 days) goes through the real nightly flow under Prefect; the real app then serves what it
published, and the page shows fake/drifting's change-point marker and before/after panel, none of
either for fake/stable, and the compare view ranks the two on the smoke suite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from api import create_app
from flows.nightly import nightly
from tasks.providers.fake import default_drift_date
from tasks.settings import Settings
from tasks.storage.layout import latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.payloads import MODELS, ModelsPayload
from tests.api.uvicorn_server import serve_in_thread
from tests.support.cdp import Tab, open_tab, skip_without_chromium, start_chromium
from tests.support.demo import build_demo_history

pytestmark = [skip_without_chromium("the dashboard test"), pytest.mark.prefect]

TODAY = date(2026, 11, 30)
READY = "document.body && document.body.dataset.state === 'ready'"


@pytest.fixture
def tab() -> Iterator[Tab]:
    with start_chromium() as browser, open_tab(browser, ready=READY) as opened:
        yield opened


def _open_model(tab: Tab, base: str, model_id: str) -> None:
    tab.open(f"{base}/#model={model_id.replace('/', '%2F')}")
    tab.wait_for("document.getElementById('detail').dataset.state === 'ready' &&"
                 f" document.getElementById('detail').dataset.modelId === {json.dumps(model_id)}")


def test_a_nightly_of_the_demo_shows_what_changed_and_when(
    prefect_harness: None, data_dir: Path, tab: Tab, tmp_path: Path
) -> None:
    store = LocalStore(data_dir)
    build_demo_history(store, TODAY)
    nightly()
    models = {m.model_id: m for m in ModelsPayload.model_validate_json(
        store.get(latest_key(MODELS))).models}
    drifting = models["fake/drifting"].model_dump(mode="json")
    change = drifting["change_point"]["date"]

    app = create_app(Settings(data_dir=data_dir), store)
    with serve_in_thread(app) as base:
        _open_model(tab, base, "fake/drifting")
        markers = tab.js("[...document.querySelectorAll('#history svg.line-chart')].map(s =>"
                         " s.querySelector('g.change-point') && s.querySelector('g.change-point')"
                         ".dataset.date)")
        note = tab.js("document.getElementById('change-point').innerText")
        points = tab.js("Object.fromEntries([...document.querySelectorAll('#history figure')]"
                        ".map(f => [f.dataset.field, f.querySelectorAll('circle').length]))")
        availability = tab.js("document.querySelector('#availability [data-availability]')"
                              ".dataset.availability")
        panel = tab.js("""(() => { const p = document.getElementById('before-after');
          return {prompts: p.querySelectorAll('.evidence-prompt').length,
            outputs: [...p.querySelectorAll('pre.output:not(.diff)')].map(e => e.textContent),
            changes: p.querySelectorAll('pre.diff ins, pre.diff del').length,
            results: [...p.querySelectorAll('.result')].map(e => e.dataset.passed)}; })()""")
        evidence_requests = [u for u in tab.requests if u.endswith("/evidence")]
        # PLUMBLINE_SCREENSHOTS keeps the picture for a person to look at.
        shots = Path(os.environ.get("PLUMBLINE_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        tab.screenshot(shots / "dashboard-demo-drifting.png")
        _open_model(tab, base, "fake/stable")
        stable_markers = tab.js("document.querySelectorAll('g.change-point').length")
        stable_evidence = tab.js("document.getElementById('evidence-none').innerText")
        tab.open(base + "/")
        compare = tab.js("[...document.querySelectorAll('#compare-table tr.compare-row')]"
                         ".map(r => r.dataset.modelId)")
        suite = tab.js("document.getElementById('compare-suite').value")
        errors = list(tab.errors)
    # The marker stands at the published estimate on every chart that has data.
    assert markers and set(markers) == {change}
    assert f"Change began on or about {change}" in note
    # ... which is where the demo's fake/drifting changed (tasks/providers/fake.py).
    assert abs(date.fromisoformat(change) - default_drift_date(TODAY)).days <= 3
    # Every history chart, the new series included, has a point per day of the demo (consistency
    # none on the first day: it compares a day with the one before).
    assert points == {"pass_rate": 35, "latency_p50_ms": 35, "consistency": 34,
                      "output_len_mean": 35, "error_rate": 35, "refusal_rate": 35,
                      "cost_usd": 35}
    # The demo's fake provider never fails: available, whatever the quality verdict says.
    assert availability == drifting["availability"]["status"] == "ok"
    # The panel: each prompt's before and after (as published), with a word diff between them.
    assert panel["prompts"] >= 1 and panel["changes"] >= 1
    assert all(out for out in panel["outputs"])
    assert evidence_requests == [f"{base}/api/models/fake/drifting/evidence"]
    # fake/stable: no change point, no evidence (and no request for it).
    assert models["fake/stable"].model_dump(mode="json").get("change_point") is None
    assert stable_markers == 0 and "only for models on watch or drifting" in stable_evidence
    # The compare view ranks both demo models on the smoke suite, the stable one first.
    assert suite == "smoke" and compare == ["fake/stable", "fake/drifting"]
    assert errors == []
