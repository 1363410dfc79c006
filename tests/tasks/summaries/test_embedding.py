"""The meaning-drift step of the summaries stage: the embedding cache (each distinct output
embedded once, only new outputs on a following night, nothing kept outside the window), the
distances it hands the drift stage, and the skip without the ``embeddings`` extra."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks import embeddings
from tasks.drift.config import DriftConfig, Window
from tasks.drift.report import compute_drift
from tasks.records.gdpr import delete_user
from tasks.records.io import write_records
from tasks.storage.layout import EMBEDDINGS, day_of_embedding_key, embedding_cache_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.embedding import MAX_OUTPUTS_PER_PROMPT_DAY, semantic_input
from tests.support.helpers import record

FIRST = date(2026, 10, 27)
CONFIG = DriftConfig(recent_days=3, baseline_days=6)
USER = "0123456789abcdef"


class CountingEncoder:
    """A cheap deterministic embedding (hashed words) that records what it was asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, hashlib.sha256(word.encode()).digest()[0] % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _day(store: LocalStore, day: date, texts: list[str], user: str = "scheduler",
         source: str = "scheduled") -> None:
    ts = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    rows = [record(timestamp=ts, user_id=user, source=source, sample_idx=i, output=t,
                   prompt_id=f"case-{i % 2}", run_id=f"run-{day.isoformat()}-{user[:4]}")
            for i, t in enumerate(texts)]
    write_records(store, rows, user_id=user, source=source)


def _night(store: LocalStore, as_of: date, encode: CountingEncoder) -> tuple:
    aggregate_changed(store)
    window = Window.ending(as_of, CONFIG)
    daily = read_daily(store, window.days())
    return semantic_input(store, daily, window, encode, "test-encoder"), window, daily


def _texts(day: int) -> list[str]:
    # Two prompts; the first repeats its answer every day, the second words it anew daily.
    return ["Paris is the capital of France", f"restart the laptop now variant {day}",
            "Paris is the capital of France", f"reboot the computer please variant {day}"]


def test_a_night_embeds_each_distinct_output_once_and_the_next_only_new_ones(
        store: LocalStore) -> None:
    days = [FIRST + timedelta(days=i) for i in range(9)]
    for i, day in enumerate(days):
        _day(store, day, _texts(i))
    encode = CountingEncoder()
    first, _, _ = _night(store, days[-1], encode)
    assert first.skipped is None and first.distances is not None
    # 1 repeated answer + 2 new wordings a day: each text embedded exactly once.
    assert sorted(encode.seen) == sorted(set(encode.seen)) and len(encode.seen) == 1 + 2 * 9
    assert first.embedded == 19
    assert first.distances.height == 2 * 9  # a distance per prompt and day
    # The next night: one new day, only its two new wordings are embedded.
    new_day = days[-1] + timedelta(days=1)
    _day(store, new_day, _texts(9))
    encode.seen.clear()
    second, window, _ = _night(store, new_day, encode)
    assert sorted(encode.seen) == sorted(set(_texts(9)) - {"Paris is the capital of France"})
    assert second.embedded == 2 and second.reused >= 1
    # The day that left the window has no cache file any more.
    keys = {o.key for o in store.list(f"{EMBEDDINGS}/")}
    assert embedding_cache_key("test-encoder", days[0]) not in keys
    assert embedding_cache_key("test-encoder", new_day) in keys
    assert len(keys) == len(window.days())


def test_a_deleted_users_outputs_leave_the_cache_with_their_day(store: LocalStore) -> None:
    days = [FIRST + timedelta(days=i) for i in range(9)]
    for i, day in enumerate(days):
        _day(store, day, _texts(i))
    _day(store, days[-1], ["a secret only this user wrote"], user=USER, source="community")
    encode = CountingEncoder()
    _night(store, days[-1], encode)
    key = embedding_cache_key("test-encoder", days[-1])
    before = pl.read_parquet(store.local_path(key))
    delete_user(store, USER)
    _night(store, days[-1], encode)
    after = pl.read_parquet(store.local_path(key))
    assert after.height == before.height - 1


def test_a_change_of_meaning_is_tested_and_flagged(store: LocalStore) -> None:
    config = DriftConfig(recent_days=3, baseline_days=10, min_rows=5)
    days = [FIRST + timedelta(days=i) for i in range(13)]
    rng = np.random.default_rng(5)
    openers = ["Sure.", "Well,", "Honestly,", "OK:", "Good question."]
    for i, day in enumerate(days):
        meaning = "buy more memory for it" if i >= 10 else "restart the laptop first"
        _day(store, day, [f"{openers[rng.integers(5)]} you should {meaning} {k}"
                          for k in range(6)])
    aggregate_changed(store)
    window = Window.ending(days[-1], config)
    daily = read_daily(store, window.days())
    semantic = semantic_input(store, daily, window, CountingEncoder(), "test-encoder")
    report = compute_drift(daily, days[-1], config, semantic=semantic)
    tests = report.tests.filter(pl.col("metric") == "semantic")
    assert tests.height and report.semantic["status"] == "ran"
    model = tests.filter(pl.col("level") == "model").row(0, named=True)
    assert model["recent_value"] > model["baseline_value"] and model["p_value"] < 0.01


def test_without_the_extra_the_metric_is_skipped_and_says_why(
        store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "plumbline_no_such_model_package")
    _day(store, FIRST, _texts(0))
    aggregate_changed(store)
    window = Window.ending(FIRST, CONFIG)
    semantic = semantic_input(store, read_daily(store), window)
    assert semantic.distances is None and "plumbline[embeddings]" in (semantic.skipped or "")
    report = compute_drift(read_daily(store), FIRST, CONFIG, semantic=semantic)
    assert report.semantic["status"] == "skipped"
    assert "plumbline[embeddings]" in report.semantic["reason"]
    assert not store.list(f"{EMBEDDINGS}/")


def test_at_most_five_outputs_per_prompt_and_day_are_embedded(store: LocalStore) -> None:
    # Eight samples of one prompt, each worded anew (temperature 0.7, many samples).
    ts = datetime(FIRST.year, FIRST.month, FIRST.day, 6, tzinfo=UTC)
    rows = [record(timestamp=ts, sample_idx=i, output=f"restart it, wording {i}",
                   prompt_id="case-0") for i in range(8)]
    write_records(store, rows, user_id="scheduler", source="scheduled")
    encode = CountingEncoder()
    semantic, _, daily = _night(store, FIRST, encode)
    assert len(encode.seen) == MAX_OUTPUTS_PER_PROMPT_DAY == 5
    # The embedded ones are the day's first hashes (sorted), a sample independent of the order
    # the samples were written in.
    cached = pl.read_parquet(store.local_path(embedding_cache_key("test-encoder", FIRST)))
    assert cached["output_hash"].to_list() == sorted(daily["output_hashes"][0])[:5]
    assert semantic.distances is not None


@pytest.mark.parametrize("encoder", ["", "../raw", "MiniLM", "a/b", "x" * 65])
def test_an_encoder_name_that_is_not_a_key_segment_is_refused(encoder: str) -> None:
    with pytest.raises(ValueError, match="encoder name"):
        embedding_cache_key(encoder, FIRST)


def test_the_cache_key_names_its_day_and_nothing_else_does() -> None:
    key = embedding_cache_key("all-minilm-l6-v2", FIRST)
    assert key == "state/embeddings/all-minilm-l6-v2/year=2026/month=10/day=27/part-0.parquet"
    assert day_of_embedding_key("all-minilm-l6-v2", key) == FIRST
    assert day_of_embedding_key("other-encoder", key) is None
    assert day_of_embedding_key("all-minilm-l6-v2", "raw/year=2026/month=10/day=27/x") is None
