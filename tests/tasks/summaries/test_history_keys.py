"""Issue 16, item 1: a model's history key is injective and reversible, so no model id (however
much it looks like another) can overwrite or be served another model's history."""

from __future__ import annotations

import itertools
import json
import random
from datetime import date

import pytest

from tasks.storage.layout import (
    LEGACY_HISTORY_PREFIX,
    MAX_SLUG_CHARS,
    evidence_key,
    history_key,
    model_id_of_slug,
    model_of_evidence_key,
    model_of_history_key,
    model_slug,
)
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.publish import HISTORY_COLUMNS, HISTORY_PREFIX, publish_history
from tests.support.helpers import write_community

# Ids that a lossy slug would merge: separators and their escapes, case, Unicode forms, dots.
LOOKALIKES = [
    "fake/stable", "fake__stable", "fake_stable", "fake%2Fstable", "fake%2fstable",
    "fake%252Fstable", "Fake/Stable", "FAKE/STABLE", "fake/Stable", "fake//stable",
    "fake/stable/", "/fake/stable", "fake\\stable", "fake:stable", "fake stable",
    "fake/stable\n", "fake/stable\x00", "fake.stable", "fake/stable.", ".fake/stable", ".",
    "..", "...", "../fake/stable", ".tmp-fake", "fak\u00e9/stable", "fake\u0301/stable",
    "ﬁ/stable", "fi/stable", "ǆ/x", "Ǆ/x", "ǅ/x", "k/x", "\u212a/x", "ß/x", "ss/x",
    "😀/stable", "a", "A", "%", "%25", "_", "-", "~",
]
# A small alphabet of the characters that matter, for exhaustive and random ids.
ALPHABET = ["a", "A", "_", "/", "%", "2", "F", "f", ".", "-", "é", "\u0301", " ", "\n", ":"]


def _check_injective(ids: list[str]) -> None:
    ids = list(dict.fromkeys(ids))
    slugs = [model_slug(m) for m in ids]
    assert len(set(slugs)) == len(ids)
    # Still distinct where a file system folds case (macOS, Windows): capitals only ever
    # appear as the hex digits of escapes.
    assert len({s.casefold() for s in slugs}) == len(ids)
    assert len({history_key(m) for m in ids}) == len(ids)
    for model_id, slug in zip(ids, slugs, strict=True):
        assert model_id_of_slug(slug) == model_id
        assert model_of_history_key(history_key(model_id)) == model_id
        # One path segment that no store treats specially.
        assert "/" not in slug and "\\" not in slug and slug not in (".", "..")
        assert not slug.startswith(".") and len(slug) <= MAX_SLUG_CHARS


def test_lookalike_ids_never_share_a_key_and_round_trip() -> None:
    _check_injective(LOOKALIKES)
    assert history_key("fake/stable") != history_key("fake__stable")
    # Common ids stay readable.
    assert model_slug("openai/gpt-4o") == "openai%2Fgpt-4o"
    assert model_slug("anthropic/claude-sonnet-4-5") == "anthropic%2Fclaude-sonnet-4-5"


def test_every_short_id_over_the_tricky_alphabet_has_its_own_key() -> None:
    ids = ["".join(p) for n in range(1, 4) for p in itertools.product(ALPHABET, repeat=n)]
    assert len(ids) == 15 + 15**2 + 15**3
    _check_injective(ids)


def test_random_ids_have_their_own_keys() -> None:
    rng = random.Random(16)
    pool = [*ALPHABET, "😀", "\u212a", "ß", "\x00", "\t", "Z", "z", "9", "@", "+"]
    ids = ["".join(rng.choices(pool, k=rng.randint(1, 24))) for _ in range(20_000)]
    _check_injective(ids)


@pytest.mark.parametrize("slug", [
    "", "a/b", "a%2fb", "%61", "a%2E", ".a", "A", "a%2", "a%zz", "%C3", "%FF", "a" * 241,
])
def test_what_no_model_id_encodes_to_is_not_a_slug(slug: str) -> None:
    """Only the canonical spelling decodes: each model id has exactly one key."""
    with pytest.raises(ValueError, match="not a model slug"):
        model_id_of_slug(slug)


@pytest.mark.parametrize(("model_id", "why"), [
    ("", "empty"), ("a\ud800", "not valid Unicode"), ("A" * 81, "at most 240"),
])
def test_ids_that_cannot_be_a_key_are_refused(model_id: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        model_slug(model_id)


def test_publish_writes_one_history_per_lookalike_and_drops_old_slug_files(
    store: LocalStore
) -> None:
    day = date(2026, 11, 20)
    for i, model_id in enumerate(["fake/stable", "fake__stable", "Fake/Stable", "fake%2Fstable"]):
        write_community(store, day, f"{i + 1:016x}", i + 1, model_id=model_id)
    # What the old nightly left: fake/stable's history under its old, shared slug.
    store.put(f"{LEGACY_HISTORY_PREFIX}fake__stable.json",
              json.dumps({"model_id": "fake/stable", "days": []}).encode())
    aggregate_changed(store)
    keys = publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    assert len(keys) == len(set(keys)) == 4
    assert sorted(o.key for o in store.list(HISTORY_PREFIX)) == sorted(keys)
    assert store.list(LEGACY_HISTORY_PREFIX) == []
    for key in keys:
        doc = json.loads(store.get(key))
        model_id = model_of_history_key(key)
        assert doc["model_id"] == model_id
        (only,) = doc["community_days"]
        expected = ["fake/stable", "fake__stable", "Fake/Stable", "fake%2Fstable"].index(model_id)
        assert only["rows"] == expected + 1 and only["evidence"] == "community"
        assert doc["days"] == []


def test_a_model_without_a_storable_key_does_not_cost_the_others_their_history(
    store: LocalStore
) -> None:
    # 100 capitals are 300 characters once encoded: no key (the submit API refuses the id).
    for i, model_id in enumerate(["A" * 100, "fake/stable"]):
        write_community(store, date(2026, 11, 1), f"{i + 1:016x}", 1, model_id=model_id)
    aggregate_changed(store)
    keys = publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    assert keys == [history_key("fake/stable")]


def test_evidence_keys_are_injective_and_apart_from_history_keys() -> None:
    """Issue 12: a model's before/after file sits beside its history under the same slug, so
    no lookalike id can overwrite or be served another model's evidence."""
    ids = list(dict.fromkeys(LOOKALIKES + ["".join(p) for p in
                                           itertools.product(ALPHABET[:6], repeat=3)]))
    keys = [evidence_key(m) for m in ids]
    assert len(set(keys)) == len(ids)
    assert len({k.casefold() for k in keys}) == len(ids)
    assert not set(keys) & {history_key(m) for m in ids}
    for model_id, key in zip(ids, keys, strict=True):
        assert model_of_evidence_key(key) == model_id
        assert model_of_history_key(key) is None
        assert model_of_evidence_key(history_key(model_id)) is None
    assert evidence_key("openai/gpt-4o") == "summaries/latest/model-evidence/openai%2Fgpt-4o.json"
    for stray in ("summaries/latest/model-evidence/openai%2fgpt-4o.json",
                  "summaries/latest/model-evidence/a/b.json",
                  "summaries/latest/model-evidence/.json"):
        assert model_of_evidence_key(stray) is None
    with pytest.raises(ValueError):
        evidence_key("")
