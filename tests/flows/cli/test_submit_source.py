"""What ``plumbline submit`` sends: results from a run id, a Parquet or a JSONL file, as the Pramana
payload plus the fields of the API's dedupe identity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from api.schemas import SubmitRequest
from flows.cli.submit_source import (
    IDENTITY_FIELDS,
    PAYLOAD_FIELDS,
    RUNNER_VERSION,
    load_results,
    records_for_run,
    to_payload,
)
from tasks.catalog import load_suite
from tasks.errors import SubmitError
from tasks.records.compaction import compact_day
from tasks.records.schema import to_table
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.run.state import open_run
from tasks.storage.layout import day_prefix
from tasks.storage.local import LocalStore
from tests.flows.cli.submit_support import RUN_ID, sample_rows, store_run
from tests.support.faults import Interrupting
from tests.support.helpers import record

API = "http://testserver"


def test_a_record_is_the_pramana_payload_plus_its_run_and_sample() -> None:
    payload = to_payload(sample_rows()[2])
    assert payload is not None
    assert set(payload) == {*PAYLOAD_FIELDS, *IDENTITY_FIELDS}
    assert (payload["run_id"], payload["sample_idx"]) == (RUN_ID, 1)
    assert payload["runner_version"] == RUNNER_VERSION
    SubmitRequest.model_validate(payload)  # what the API accepts, field by field
    # A payload read from a file is sent with those fields only (never a user_id of its own).
    passthrough = to_payload({**payload, "user_id": "someone", "_line": 3})
    assert passthrough == payload


def test_results_come_from_a_run_id_a_parquet_or_a_jsonl_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    rows = sample_rows()
    other = record(prompt_id="c9", output="x", run_id="other-run")
    store_run(store, [*rows, other])
    got = load_results(RUN_ID, store)
    assert sorted(r["prompt_id"] for r in got) == ["c1", "c1", "c2", "c3"]
    # A custom run id (no date in it) is found the same way: through its run state.
    assert [r["prompt_id"] for r in load_results("other-run", store)] == ["c9"]
    with pytest.raises(SubmitError, match="no rows of run 'nope'"):
        load_results("nope", store)

    parquet = tmp_path / "run.parquet"
    pq.write_table(to_table(rows), parquet)
    assert len(load_results(str(parquet))) == 4

    jsonl = tmp_path / "pramana.jsonl"
    payload = to_payload(rows[0])
    assert payload is not None
    jsonl.write_text(json.dumps(payload) + "\n\n" + json.dumps(payload) + "\n")
    loaded = load_results(str(jsonl))
    assert [to_payload(r) for r in loaded] == [payload, payload]

    jsonl.write_text(json.dumps(payload) + "\n{not json\n")
    with pytest.raises(SubmitError, match=r"pramana.jsonl:2: not JSON"):
        load_results(str(jsonl))
    with pytest.raises(SubmitError, match="no such file"):
        load_results(str(tmp_path / "missing.parquet"))
    bad = dict(payload, output=None)
    with pytest.raises(SubmitError, match="line 3: payload lacks output"):
        to_payload({**bad, "_line": 3})


def test_a_run_is_found_through_its_state_once_even_while_its_day_is_compacted(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "data")
    suite = load_suite("smoke")
    as_of = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    config = resolve_config(suite, run_id="submit-me", samples=2, as_of=as_of)
    open_run(store, suite, config)
    for model in ("fake/stable", "fake/drifting"):
        run_shard(suite, model, suite.cases, config, store, flush_rows=3)  # many small files
    # Another run in the same partition: its rows are not this run's.
    neighbour = resolve_config(suite, run_id="neighbour", samples=1, as_of=as_of)
    open_run(store, suite, neighbour)
    run_shard(suite, "fake/stable", suite.cases, neighbour, store)

    def compact() -> None:
        compact_day(store, as_of.date())

    # Ops 0-1 read the run's state, op 2 lists the day's files; the compaction merges them
    # away just after that listing, before they are read.
    racing = Interrupting(store, 2, compact, after=True)
    rows = records_for_run(racing, "submit-me")  # type: ignore[arg-type]
    assert any("compacted_" in o.key for o in store.list(day_prefix(as_of.date())))
    assert len(rows) == 2 * len(suite.cases) * 2
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["run_id"] for r in rows} == {"submit-me"}
    assert {(r["model_id"], r["prompt_id"], r["sample_idx"]) for r in rows} == {
        (m, c.id, s) for m in ("fake/stable", "fake/drifting") for c in suite.cases
        for s in range(2)
    }
