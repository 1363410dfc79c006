"""Reading a summary file through its payload model: a bad file says which file and which field."""

from __future__ import annotations

import json

import pytest

from tasks.errors import PlumblineError
from tasks.summaries.payloads import (
    DriftPayload,
    HistoryPayload,
    ModelsPayload,
    NightlyStatus,
    parse_summary,
)
from tests.support.helpers import models_json


def test_a_valid_file_parses_to_typed_fields() -> None:
    payload = parse_summary(ModelsPayload, models_json(), "models.json")
    assert payload.window.recent_days == 7 and payload.models[0].verdict == "stable"
    assert payload.generated_at.isoformat() == "2026-11-30T02:00:00+00:00"


@pytest.mark.parametrize(("data", "where"), [
    (models_json(verdict="fine"), "models.0.verdict"),
    (models_json(rows_recent="many"), "models.0.rows_recent"),
    (json.dumps({"models": []}).encode(), "generated_at"),
    (b"{not json", "the file"),
])
def test_a_bad_file_names_the_file_and_the_field(data: bytes, where: str) -> None:
    with pytest.raises(PlumblineError) as exc:
        parse_summary(ModelsPayload, data, "/data/summaries/latest/models.json")
    message = str(exc.value)
    assert message.startswith("/data/summaries/latest/models.json is not a valid ModelsPayload")
    assert where in message


def test_nightly_status_tolerates_fields_it_does_not_know() -> None:
    # /api/health may run a version behind the nightly worker that wrote the file.
    status = parse_summary(NightlyStatus, b'{"finished_at": "2026-11-22T03:00:00+00:00", '
                                          b'"new_field": 1}', "nightly.json")
    assert status.finished_at.isoformat() == "2026-11-22T03:00:00+00:00"
    with pytest.raises(PlumblineError, match="finished_at"):
        parse_summary(NightlyStatus, b'{"days": 3}', "nightly.json")


def test_files_written_before_the_evidence_split_still_read() -> None:
    """A models.json, drift.json or history of an older nightly has no evidence fields: the
    fields it has keep their meaning (the project's), the new ones take their defaults."""
    models = parse_summary(ModelsPayload, models_json(), "models.json")
    assert models.models[0].evidence == "project" and models.models[0].community is None
    assert models.evidence_rules is None
    drift = parse_summary(DriftPayload, json.dumps({
        "generated_at": "2026-11-30T02:00:00+00:00", "window": json.loads(models_json())["window"],
        "config": {"alpha": 0.05, "min_cliffs_delta": 0.147, "min_rate_difference": 0.01,
                   "min_consistency_drop": 0.05, "level_shares": [0.6, 0.2, 0.2]},
        "tests": []}).encode(), "drift.json")
    assert drift.community_tests == []
    history = parse_summary(HistoryPayload, b'{"model_id": "fake/stable", "days": []}', "h.json")
    assert history.community_days == []
    # A community summary can never pass for the model's own verdict: its label is fixed.
    with pytest.raises(PlumblineError, match=r"models\.0\.evidence"):
        parse_summary(ModelsPayload, models_json(evidence="community"), "models.json")
