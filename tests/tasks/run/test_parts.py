"""Shards sized by the work (one per model by default) and a spread run's parts: every cell that
is left lands in exactly one part, parts are even in the work left, and a child run of a part
works only while its parent holds the run id's lease."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog import load_suite
from tasks.errors import RunBusy
from tasks.run.lease import FollowedLease, RunLease
from tasks.run.plan import plan_parts, plan_shards, resolve_config
from tasks.storage.local import LocalStore
from tasks.suites.model import Suite
from tests.support.helpers import write_suite

MODELS = ["fake/stable", "fake/drifting", "fake/flaky"]


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    cases = [{"id": f"c-{i:03d}", "input": f"q{i}", "ideal": ["x"],
              "assertion": {"type": "contains"}} for i in range(101)]
    return load_suite(write_suite(tmp_path / "parts", cases))


def test_by_default_one_shard_per_model_holding_every_case(suite: Suite) -> None:
    config = resolve_config(suite, run_id="r-1", samples=3)
    plan = plan_shards(suite.cases, MODELS, config)
    assert [(p.model_id, len(p.cases), p.todo) for p in plan] == [(m, 101, 303) for m in MODELS]
    # An explicit size still cuts a model into shards (the old behaviour, on request).
    assert len(plan_shards(suite.cases, MODELS, config, 25)) == 3 * 5


def test_parts_cover_every_cell_left_once_and_are_even(suite: Suite) -> None:
    done = {(m, c.id, s) for m in MODELS[:1] for c in suite.cases[:60] for s in range(3)}
    parts = plan_parts(suite.cases, MODELS, 3, 6, done)
    covered: Counter[tuple[str, str, int]] = Counter()
    for p in parts:
        for c in suite.cases[p.start:p.stop]:
            for s in range(3):
                if (p.model_id, c.id, s) not in done:
                    covered[(p.model_id, c.id, s)] += 1
        assert p.todo == sum(1 for c in suite.cases[p.start:p.stop] for s in range(3)
                             if (p.model_id, c.id, s) not in done)
    expected = {(m, c.id, s) for m in MODELS for c in suite.cases for s in range(3)} - done
    assert set(covered) == expected and set(covered.values()) == {1}
    # The half-done model gets fewer parts; sizes stay within a few cells of each other.
    per_model = Counter(p.model_id for p in parts)
    assert per_model["fake/stable"] < per_model["fake/drifting"]
    sizes = [p.todo for p in parts]
    assert len(parts) >= 5 and max(sizes) - min(sizes) <= 0.35 * max(sizes), sizes
    assert plan_parts(suite.cases, MODELS, 1, 4, {(m, c.id, 0) for m in MODELS
                                                  for c in suite.cases}) == []


def test_a_part_works_only_under_its_parents_live_lease(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    parent = RunLease(store, "big-1", "flow run 'parent'", settle=0.01)
    parent.acquire()
    lost: list[bool] = []
    child = FollowedLease(store, "big-1", parent.token, on_lost=lambda: lost.append(True))
    child.follow()  # live, our token: the part may work
    child.check()
    # Another run took the run id over (the parent had died): the part stops at its next look.
    parent.release()
    usurper = RunLease(store, "big-1", "flow run 'usurper'", settle=0.01)
    usurper.acquire()
    child.renew()
    assert lost == [True]
    with pytest.raises(RunBusy, match="flow run 'usurper'"):
        child.check()
    child.release()
    # A part started after its parent's lease lapsed, or with a token nobody holds, refuses.
    with pytest.raises(RunBusy, match="no longer holds the run id"):
        FollowedLease(store, "big-1", "0" * 32).follow()
    usurper.release()
    with pytest.raises(RunBusy, match="lease is gone"):
        FollowedLease(store, "big-1", usurper.token).follow()
    stale = RunLease(store, "big-2", "flow run 'old'", settle=0.01)
    stale.acquire()
    later = FollowedLease(store, "big-2", stale.token,
                          now=lambda: datetime.now(UTC) + timedelta(seconds=stale.ttl + 1))
    with pytest.raises(RunBusy, match="expired"):
        later.follow()
