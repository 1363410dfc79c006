"""Reading a summary file through its payload model: a bad file says which file and which field."""

from __future__ import annotations

import json

import pytest

from tasks.errors import PlumblineError
from tasks.summaries.payloads import ModelsPayload, NightlyStatus, parse_summary
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
