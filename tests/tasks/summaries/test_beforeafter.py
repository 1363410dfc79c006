"""Before and after (issue 12): the prompts picked, the answers shown, the word diff, what the
reader reads, and what a night over the demo publishes."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from tasks.drift.config import DriftConfig, Window
from tasks.drift.report import DriftReport, compute_reports
from tasks.identity import SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.io import write_records
from tasks.records.live import range_keys
from tasks.storage.layout import evidence_key, history_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.beforeafter import (
    MAX_OUTPUT_CHARS,
    RAW_COLUMNS,
    Pick,
    build_evidence,
    evidence_scan,
    night_evidence,
    pick_prompts,
    truncate,
    word_diff,
)
from tasks.summaries.payloads import ModelEvidencePayload, ModelsPayload
from tasks.summaries.publish import dump_json, models_payload, publish_evidence, render_report
from tests.support.demo import build_demo_history
from tests.support.helpers import DelegatingStore, community_record, record

TODAY = date(2026, 11, 30)
CONFIG = DriftConfig(recent_days=2, baseline_days=3)
WINDOW = Window.ending(TODAY, CONFIG)  # baseline 11-26..11-28, recent 11-29..11-30


def _spell(ops: list[dict[str, str]], keep: str) -> str:
    return "".join(o["text"] for o in ops if o["op"] in ("equal", keep))


# --- the diff ---------------------------------------------------------------------------------

def test_word_diff_marks_the_changed_words() -> None:
    ops = word_diff("The answer is 6.", "The answer is 7.")
    assert ops == [{"op": "equal", "text": "The answer is "},
                   {"op": "delete", "text": "6."}, {"op": "insert", "text": "7."}]
    assert word_diff("same words", "same words") == [{"op": "equal", "text": "same words"}]
    assert word_diff("", "new") == [{"op": "insert", "text": "new"}]
    assert word_diff("old", "") == [{"op": "delete", "text": "old"}]
    # A word inserted in the middle is one insert between two equal runs.
    assert [o["op"] for o in word_diff("a b c", "a b x c")] == ["equal", "insert", "equal"]


def test_word_diff_runs_spell_both_texts_exactly() -> None:
    rng = random.Random(7)
    vocab = ["the", "answer", "is", "6.", "Sorry,", "I", "can't", "\n", "  ", "OK"]
    for _ in range(300):
        a = " ".join(rng.choices(vocab, k=rng.randint(0, 30)))
        b = " ".join(rng.choices(vocab, k=rng.randint(0, 30)))
        ops = word_diff(a, b)
        assert _spell(ops, "delete") == a and _spell(ops, "insert") == b
        # Runs are merged: never two of the same op side by side, never an empty one.
        assert all(o["text"] for o in ops)
        assert all(x["op"] != y["op"] for x, y in itertools.pairwise(ops))


def test_long_outputs_are_truncated_with_a_marker() -> None:
    assert truncate("short") == "short"
    long = "word " * 5000
    shown = truncate(long)
    assert shown.startswith(long[:MAX_OUTPUT_CHARS])
    assert shown.endswith(f"[truncated: {len(long)} characters in all]")
    assert len(shown) < MAX_OUTPUT_CHARS + 60


# --- the pick of prompts ----------------------------------------------------------------------

def _tests(rows: list[tuple[str, str, str | None, str | None, str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"model_id": m, "level": lv, "suite": s, "prompt_id": p, "metric": metric,
          "p_value": q, "p_adjusted": q, "significant": q is not None and q < 0.05}
         for m, lv, s, p, metric, q in rows],
        schema={"model_id": pl.String, "level": pl.String, "suite": pl.String,
                "prompt_id": pl.String, "metric": pl.String, "p_value": pl.Float64,
                "p_adjusted": pl.Float64, "significant": pl.Boolean})


def test_pick_takes_the_smallest_adjusted_p_values_per_model() -> None:
    tests = _tests([
        ("m/a", "model", None, None, "pass_rate", 1e-9),  # model level: never a prompt
        ("m/a", "prompt", "s", "p1", "pass_rate", 0.2),
        ("m/a", "prompt", "s", "p1", "latency_ms", 0.001),  # p1's strongest test
        ("m/a", "prompt", "s", "p2", "output_len", 0.01),
        ("m/a", "prompt", "s", "p3", "pass_rate", 0.5),
        ("m/a", "prompt", "s", "p4", "pass_rate", None),  # not testable: never picked
        ("m/b", "prompt", "s", "p9", "pass_rate", 0.0001),
        ("m/c", "prompt", "s", "p1", "pass_rate", 1e-12),  # not asked for
    ])
    picks = pick_prompts(tests, ["m/a", "m/b"], limit=2)
    assert picks == [Pick("m/a", "s", "p1", "latency_ms", 0.001),
                     Pick("m/a", "s", "p2", "output_len", 0.01),
                     Pick("m/b", "s", "p9", "pass_rate", 0.0001)]
    assert [p.prompt_id for p in pick_prompts(tests, ["m/a"], limit=5)] == ["p1", "p2", "p3"]
    assert pick_prompts(tests, ["m/a"], limit=0) == []
    assert pick_prompts(tests, [], limit=5) == []


# --- reading the raw rows ---------------------------------------------------------------------

def _write(store: LocalStore, day: date, prompt: str, output: str, n: int = 1, *,
           model: str = "m/a", hour: int = 6, **fields: object) -> None:
    rows = [record(model_id=model, prompt_id=prompt, output=output, run_id=f"r-{day}-{hour}",
                   sample_idx=i, timestamp=datetime(day.year, day.month, day.day, hour, i,
                                                    tzinfo=UTC), **fields)
            for i in range(n)]
    write_records(store, rows, user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)


class NoLocalPaths(DelegatingStore):
    """The local store seen as a remote one (like B2): no file has a local path."""

    def local_path(self, key: str) -> Path | None:
        return None


def _report(picks: list[tuple[str, str, float]], verdict: str = "drifting") -> DriftReport:
    tests = _tests([("m/a", "prompt", "smoke", p, metric, q) for p, metric, q in picks])
    models = [{"model_id": "m/a", "verdict": verdict, "reasons": []}]
    return DriftReport(WINDOW, CONFIG, tests, models, pl.DataFrame())


def test_the_reader_asks_only_for_the_picked_prompts_rows(store: LocalStore) -> None:
    for i in range(5):
        day = WINDOW.baseline_start + timedelta(days=i)
        for prompt in ("p1", "p2", "p3"):
            _write(store, day, prompt, f"{prompt} on {day}", n=2, hour=6)
            _write(store, day, prompt, "other model", n=2, hour=7, model="m/b")
    keys = range_keys(store, WINDOW.baseline_start, WINDOW.as_of)
    scan = evidence_scan(store, keys, [Pick("m/a", "smoke", "p2", "pass_rate", 0.01)], WINDOW)
    plan = scan.explain()
    # The column selection and the model, prompt and day predicates are in the Parquet scan.
    scan_part = plan[plan.index("Parquet SCAN"):]
    assert f"PROJECT {len(RAW_COLUMNS)}/" in scan_part
    selection = scan_part[scan_part.index("SELECTION:"):].splitlines()[0]
    for pushed in ('col("model_id").is_in', 'col("prompt_id").is_in', 'col("year")',
                   'col("error").is_null()', 'col("source").is_in'):
        assert pushed in selection, (pushed, selection)
    rows = scan.collect()
    # 5 days × 2 samples of m/a's p2, out of 60 rows in those files.
    assert rows.height == 10
    assert set(rows["prompt_id"]) == {"p2"} and set(rows["model_id"]) == {"m/a"}


def test_most_common_answer_of_each_window(store: LocalStore) -> None:
    b1, b2, r1, r2 = (WINDOW.baseline_start, WINDOW.baseline_end, WINDOW.recent_start,
                      WINDOW.as_of)
    _write(store, b1, "p1", "The answer is 6.", n=3, latency_ms=400.0)
    _write(store, b2, "p1", "The answer is 6.", n=1, latency_ms=410.0, hour=8)
    _write(store, b2, "p1", "Six.", n=2, hour=9)
    _write(store, r1, "p1", "The answer is 6.", n=1)
    _write(store, r1, "p1", "Sorry, I can't.", n=1, passed=False, score=0.0)
    _write(store, r2, "p1", "Sorry, I can't.", n=1, passed=False, score=0.0, latency_ms=900.0)
    # Neither failed calls nor community rows nor days outside the window are answers.
    _write(store, r2, "p1", "", n=3, hour=10, output_len=None, error="HTTP 503", passed=None,
           score=None)
    _write(store, b1 - timedelta(days=1), "p1", "Sorry, I can't.", n=9)
    write_records(store, [community_record(r2, "0123456789abcdef", i, model_id="m/a",
                                           prompt_id="p1", output="community") for i in range(9)],
                  user_id="0123456789abcdef", source="community")
    payloads = build_evidence(store, _report([("p1", "pass_rate", 0.001)]), limit=5)
    (prompt,) = payloads["m/a"].prompts
    assert (prompt.prompt_id, prompt.suite, prompt.metric) == ("p1", "smoke", "pass_rate")
    base, recent = prompt.baseline, prompt.recent
    assert (base.output, base.count, base.date, base.passed) == ("The answer is 6.", 4, b2, True)
    assert base.latency_ms == 410.0  # its latest row's
    assert (recent.output, recent.count, recent.date) == ("Sorry, I can't.", 2, r2)
    assert (recent.passed, recent.score, recent.latency_ms) == (False, 0.0, 900.0)
    assert _spell([d.model_dump() for d in prompt.diff], "insert") == "Sorry, I can't."
    # A remote store (no local paths: each file downloaded and filtered) gives the same answers.
    remote = build_evidence(NoLocalPaths(store), _report([("p1", "pass_rate", 0.001)]), limit=5)
    assert remote["m/a"].prompts == payloads["m/a"].prompts


def test_a_prompt_without_answers_in_one_window_is_left_out(store: LocalStore) -> None:
    _write(store, WINDOW.baseline_start, "p1", "before", n=2)
    _write(store, WINDOW.as_of, "p1", "after", n=2)
    _write(store, WINDOW.baseline_start, "p2", "only before", n=2)
    _write(store, WINDOW.as_of, "p2", "", n=2, hour=9, output_len=None, error="timeout",
           passed=None, score=None)
    payloads = build_evidence(store, _report([("p2", "pass_rate", 1e-6),
                                              ("p1", "pass_rate", 0.01)]), limit=5)
    assert [p.prompt_id for p in payloads["m/a"].prompts] == ["p1"]
    # A stable model gets nothing.
    assert build_evidence(store, _report([("p1", "pass_rate", 0.01)], "stable")) == {}


def test_huge_outputs_are_published_truncated(store: LocalStore) -> None:
    _write(store, WINDOW.baseline_start, "p1", "alpha " * 20_000, n=1)
    _write(store, WINDOW.as_of, "p1", "beta " * 20_000, n=1)
    payload = build_evidence(store, _report([("p1", "output_len", 1e-6)]))["m/a"]
    assert len(dump_json(payload)) < 4 * MAX_OUTPUT_CHARS + 2_000
    assert payload.prompts[0].recent.output.endswith("[truncated: 100000 characters in all]")


# --- a night over the demo --------------------------------------------------------------------

def test_a_night_over_the_demo_publishes_evidence_for_the_drifting_model_only(
    store: LocalStore,
) -> None:
    build_demo_history(store, TODAY)
    aggregate_changed(store)
    # Left by an earlier night: fake/stable was flagged then, and a model since gone.
    publish_evidence(store, {m: ModelEvidencePayload(model_id=m, generated_at=datetime.now(UTC),
                                                     window={"as_of": TODAY, "recent_days": 7,
                                                             "baseline_days": 28,
                                                             "recent_start": TODAY,
                                                             "baseline_start": TODAY,
                                                             "baseline_end": TODAY},
                                                     prompts=[])
                             for m in ("fake/stable", "old/model")})
    reports = compute_reports(read_daily(store), TODAY)
    night = night_evidence(store, reports.project, limit=3)
    assert set(night.published) == {"fake/drifting"}
    assert store.exists(evidence_key("fake/drifting"))
    assert not store.exists(evidence_key("fake/stable"))
    assert not store.exists(evidence_key("old/model"))
    assert not store.exists(history_key("fake/drifting"))  # the evidence stage writes no history
    evidence = ModelEvidencePayload.model_validate_json(store.get(evidence_key("fake/drifting")),
                                                        strict=True)
    assert len(evidence.prompts) == 3
    for prompt in evidence.prompts:
        assert prompt.baseline.output != prompt.recent.output
        assert prompt.baseline.date <= evidence.window.baseline_end < prompt.recent.date
        assert _spell([d.model_dump() for d in prompt.diff], "delete") == prompt.baseline.output
    p_values = [p.p_adjusted for p in evidence.prompts]
    assert p_values == sorted(p_values)  # strongest evidence first
    # The verdicts carry when it started and where the evidence is; models.json publishes them.
    by_id = {m["model_id"]: m for m in night.report.models}
    drifting = by_id["fake/drifting"]
    assert drifting["evidence_url"] == "/api/models/fake/drifting/evidence"
    point = drifting["change_point"]
    assert point["date"] == "2026-11-26"  # the demo's drift day
    assert point["earliest"] <= point["date"] <= point["latest"]
    assert any("on or about 2026-11-26" in r for r in drifting["reasons"])
    assert by_id["fake/stable"]["change_point"] is None
    assert by_id["fake/stable"]["evidence_url"] is None
    models = ModelsPayload.model_validate_json(
        dump_json(models_payload(night.report, {"fake/stable": TODAY})), strict=True)
    summary = {m.model_id: m for m in models.models}["fake/drifting"]
    assert summary.change_point is not None and summary.change_point.date == date(2026, 11, 26)
    assert summary.evidence_url == "/api/models/fake/drifting/evidence"
    # The drift report artifact links it.
    md = render_report(night.report)
    assert "before and after: [/api/models/fake/drifting/evidence]" in md
    assert json.loads(store.get(evidence_key("fake/drifting")))["model_id"] == "fake/drifting"
