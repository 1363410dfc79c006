"""Resuming ``plumbline submit``: the progress file, and results sent again after the client died
between the server storing them and recording the answer."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from flows.cli.submit_client import submit
from flows.cli.submit_resume import ProgressFile
from flows.cli.submit_source import PAYLOAD_FIELDS, to_payload
from tasks.errors import SubmitError
from tests.flows.cli.submit_support import many_records, real_api, times_stored
from tests.support.faults import Crash
from tests.support.helpers import record

API = "http://testserver"


def test_a_batch_stored_but_never_acknowledged_is_sent_again_and_stored_once(
    tmp_path: Path,
) -> None:
    rows = many_records(1200)
    folder = tmp_path / "progress"
    # The client dies right after the API answered the second batch: stored, not recorded.
    with real_api(tmp_path, crash_after=2) as api:
        progress = ProgressFile.open(folder, source="bulk", api_url=API, token=None)
        with pytest.raises(Crash):
            submit(rows, API, client=api.client, progress=progress)
        progress.close()
        assert len(api.pending()) == 1000

        progress = ProgressFile.open(folder, source="bulk", api_url=API, token=None)
        assert progress.resumed and len(progress.acked) == 500
        report = submit(rows, API, client=api.client, progress=progress)
        # Batch 1 skipped; batch 2 sent again (the API says duplicate); batch 3 new.
        assert (report.resumed, report.duplicate, report.accepted) == (500, 500, 200)
        assert report.requests == 2
        stored = times_stored(api.pending())
        assert len(stored) == 1200 and set(stored.values()) == {1}
        progress.finish()
    assert list(folder.iterdir()) == []


def test_results_without_a_timestamp_are_the_same_results_when_sent_again(
    tmp_path: Path,
) -> None:
    bare = []
    for i in range(5):
        payload = to_payload(record(prompt_id=f"q{i}", output="same"))
        assert payload is not None
        bare.append({k: v for k, v in payload.items()
                     if k in PAYLOAD_FIELDS and k != "timestamp"})
    folder = tmp_path / "progress"
    with real_api(tmp_path, crash_after=1) as api:
        progress = ProgressFile.open(folder, source="pramana.jsonl", api_url=API, token=None)
        base = progress.base_timestamp
        with pytest.raises(Crash):
            submit(bare, API, client=api.client, progress=progress)
        progress.close()
        progress = ProgressFile.open(folder, source="pramana.jsonl", api_url=API, token=None)
        assert progress.base_timestamp == base and progress.acked == set()
        report = submit(bare, API, client=api.client, progress=progress)
        progress.close()
        assert (report.accepted, report.duplicate) == (0, 5)
        stamps = sorted(r["timestamp"] for r in api.pending())
        assert stamps == [base + timedelta(microseconds=i) for i in range(5)]


def test_the_progress_file_survives_a_torn_line_and_believes_only_its_own_shape(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "progress"
    first = ProgressFile.open(folder, source="s", api_url="http://a/", token="t")
    first.record(["a" * 32, "b" * 32])
    # While it runs, another upload of the same source to the same API must wait.
    with pytest.raises(SubmitError, match="another `plumbline submit` of s to http://a"):
        ProgressFile.open(folder, source="s", api_url="http://a", token="t")
    first.close()
    path = first.path
    with path.open("a") as fh:  # a line not written here, then a kill mid-line
        fh.write(json.dumps({"acked": ["../../etc/passwd"]}) + "\n")
        fh.write('{"acked": ["cccccccccccccccccccc')
    again = ProgressFile.open(folder, source="s", api_url="http://a", token="t")
    assert again.resumed and again.acked == {"a" * 32, "b" * 32}
    again.record(["d" * 32])
    again.close()
    assert ProgressFile.open(folder, source="s", api_url="http://a",
                             token="t").acked == {"a" * 32, "b" * 32, "d" * 32}
    # Another user (token), another API or another source: another file.
    other = ProgressFile.open(folder, source="s", api_url="http://a", token="u")
    assert other.path != path and not other.resumed
    other.close()
    # A file whose header is not this upload's is not believed: it starts over.
    stranger = ProgressFile.open(folder, source="s2", api_url="http://a", token="t")
    stranger.close()
    stranger.path.write_text(path.read_text())
    reopened = ProgressFile.open(folder, source="s2", api_url="http://a", token="t")
    assert not reopened.resumed and reopened.acked == set()
    reopened.close()
    fresh = ProgressFile.open(folder, source="s", api_url="http://a", token="t", restart=True)
    assert not fresh.resumed and fresh.acked == set()
    fresh.finish()
    assert not path.exists()
    # The token names the file through a hash only; it is never written down.
    secret = ProgressFile.open(folder, source="s", api_url="http://a", token="s3cret-token")
    secret.record(["e" * 32])
    secret.close()
    assert "s3cret" not in secret.path.name and "s3cret" not in secret.path.read_text()
