"""The CLI's verdict table reads models.json through its payload model."""

from __future__ import annotations

import pytest

from flows.cli.tables import print_verdicts
from tasks.errors import PlumblineError
from tasks.storage.layout import latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.publish import MODELS
from tests.support.helpers import models_json


def test_the_verdict_table_shows_each_model(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.put(latest_key(MODELS), models_json(reasons=["all prompts: latency_ms median 410 → 620"]))
    print_verdicts(store)
    out = capsys.readouterr().out
    assert "Verdicts (last 7 days vs the 28 before, as of 2026-11-30):" in out
    row = next(line for line in out.splitlines() if "fake/stable" in line).split()
    assert row[:4] == ["fake/stable", "stable", "0.950", "0.960"]
    assert "all prompts: latency_ms median 410 → 620" in out


def test_no_models_json_yet_prints_nothing(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    print_verdicts(store)
    assert capsys.readouterr().out == ""


def test_a_malformed_models_json_names_the_file_not_a_key_error(store: LocalStore) -> None:
    store.put(latest_key(MODELS), b'{"models": [{"model_id": "fake/stable"}]}')
    with pytest.raises(PlumblineError) as exc:
        print_verdicts(store)
    message = str(exc.value)
    path = store.local_path(latest_key(MODELS))
    assert path is not None and message.startswith(f"{path} is not a valid ModelsPayload")
    assert "window: Field required" in message and "(and 10 more)" in message
