"""One flow run per run id (issue 16, item 4): the lease in the store, on a local folder and on
the B2 simulator, with contenders racing, a holder dying, a slow write and a store failing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.errors import RunBusy, StorageError
from tasks.run.lease import LOCAL_SETTLE_S, SETTLE_S, RunLease, read_lease
from tasks.storage.base import ObjectStore
from tasks.storage.layout import run_lease_key
from tasks.storage.local import LocalStore
from tests.support.b2 import make_b2_store
from tests.support.helpers import DelegatingStore

RUN = "backfill-2026-11-03"


@pytest.fixture(params=["local", "b2"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "data")
    store, _ = make_b2_store()
    return store


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_second_run_of_a_held_run_id_fails_at_once_naming_the_holder(
    any_store: ObjectStore,
) -> None:
    first = RunLease(any_store, RUN, "flow run 'calm-otter'", settle=0.05)
    first.acquire()
    started = time.monotonic()
    with pytest.raises(RunBusy) as err:
        RunLease(any_store, RUN, "flow run 'eager-lynx'", settle=0.05).acquire()
    assert time.monotonic() - started < 1  # no settle, no waiting: it read a live lease
    assert err.value.run_id == RUN and err.value.holder == "flow run 'calm-otter'"
    assert f"run {RUN!r} is already running: held by flow run 'calm-otter'" in str(err.value)
    assert "run the same id again to resume it" in str(err.value)
    # Released at the end, the run id is free again (a resume can take it).
    first.release()
    assert read_lease(any_store, RUN) is None
    again = RunLease(any_store, RUN, "flow run 'eager-lynx'", settle=0.05)
    again.acquire()
    assert read_lease(any_store, RUN).holder == "flow run 'eager-lynx'"  # type: ignore[union-attr]


def race(store: ObjectStore, run_id: str, contenders: int = 4) -> tuple[list[str], list[RunBusy]]:
    """``contenders`` threads take the lease on ``run_id`` at the same moment."""
    barrier = threading.Barrier(contenders)
    winners: list[str] = []
    refused: list[RunBusy] = []

    def contend(name: str) -> None:
        lease = RunLease(store, run_id, name, settle=0.3)
        barrier.wait()
        try:
            lease.acquire()
            winners.append(name)
        except RunBusy as exc:
            refused.append(exc)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return winners, refused


def test_contenders_starting_together_let_exactly_one_through(any_store: ObjectStore) -> None:
    for round_ in range(4):
        winners, refused = race(any_store, f"race-{round_}")
        assert len(winners) == 1, (round_, winners)
        # Each refused contender names the lease it read back (mid-race, possibly another
        # contender's that was then overwritten in turn); in the end the winner holds it.
        assert len(refused) == 3 and all(e.holder in {"w0", "w1", "w2", "w3"} for e in refused)
        lease = read_lease(any_store, f"race-{round_}")
        assert lease is not None and lease.holder == winners[0]


def test_a_dead_holders_lease_expires_and_the_run_id_is_taken_over(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path / "data"), Clock()
    RunLease(store, RUN, "killed run", ttl=120, settle=0, now=clock).acquire()  # never released
    clock.now += timedelta(seconds=119)
    with pytest.raises(RunBusy, match="killed run"):
        RunLease(store, RUN, "retry", settle=0, now=clock).acquire()
    clock.now += timedelta(seconds=2)
    RunLease(store, RUN, "retry", settle=0, now=clock).acquire()
    assert read_lease(store, RUN).holder == "retry"  # type: ignore[union-attr]


class SlowPuts(DelegatingStore):
    """A store whose writes of one lease token take ``delay`` seconds to land (a B2 upload
    stuck in retries)."""

    def __init__(self, inner: ObjectStore, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay
        self.slow_token = ""

    def put(self, key: str, data: bytes) -> None:
        if self.slow_token and self.slow_token.encode() in data:
            time.sleep(self.delay)
        super().put(key, data)


def test_a_write_slower_than_the_settle_is_caught_by_the_next_renewal(tmp_path: Path) -> None:
    """The documented limit of a store without compare-and-swap, and what bounds it."""
    store = SlowPuts(LocalStore(tmp_path / "data"), delay=0.6)
    lost: list[str] = []
    slow = RunLease(store, RUN, "slow", settle=0.2, on_lost=lambda: lost.append("slow"))
    fast = RunLease(store, RUN, "fast", settle=0.2, on_lost=lambda: lost.append("fast"))
    store.slow_token = slow.token
    t = threading.Thread(target=slow.acquire)
    t.start()  # reads "no lease", then its write takes 0.6 s
    time.sleep(0.1)
    fast.acquire()  # reads "no lease" too, writes, settles, reads its own lease back: in
    t.join(10)  # ... and the slow write then lands and reads itself back: both got through
    store.slow_token = ""
    # Their renewals: the one whose lease was overwritten learns it and stops.
    fast.renew()
    slow.renew()
    assert lost == ["fast"]
    with pytest.raises(RunBusy, match="taken over by slow"):
        fast.check()
    slow.check()


class FailingPuts(DelegatingStore):
    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.failing = False

    def put(self, key: str, data: bytes) -> None:
        if self.failing:
            raise StorageError("B2 is down", key=key)
        super().put(key, data)


def test_a_lease_that_cannot_be_renewed_before_it_expires_is_lost(tmp_path: Path) -> None:
    store, clock = FailingPuts(LocalStore(tmp_path / "data")), Clock()
    lease = RunLease(store, RUN, "holder", ttl=120, settle=0, now=clock)
    lease.acquire()
    store.failing = True
    clock.now += timedelta(seconds=60)
    lease.renew()  # a hiccup: still ours until it expires
    lease.check()
    clock.now += timedelta(seconds=61)
    lease.renew()
    with pytest.raises(RunBusy, match="could not be renewed before it expired"):
        lease.check()


def test_release_never_deletes_another_runs_lease(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path / "data"), Clock()
    old = RunLease(store, RUN, "old", ttl=10, settle=0, now=clock)
    old.acquire()
    clock.now += timedelta(seconds=11)  # old stalled past its expiry; a new run took over
    RunLease(store, RUN, "new", settle=0, now=clock).acquire()
    old.release()
    assert read_lease(store, RUN).holder == "new"  # type: ignore[union-attr]


def test_renewal_runs_in_the_background_and_stops_at_release(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    with RunLease(store, RUN, "holder", settle=0, renew_every=0.05) as lease:
        first = read_lease(store, RUN)
        time.sleep(0.3)
        renewed = read_lease(store, RUN)
        assert first is not None and renewed is not None
        assert renewed.expires > first.expires and renewed.token == lease.token
    assert read_lease(store, RUN) is None
    assert not store.exists(run_lease_key(RUN))


def test_a_lease_file_that_is_not_one_protects_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data")
    store.put(run_lease_key(RUN), b"{not json")
    lease = RunLease(store, RUN, "holder", settle=0)
    lease.acquire()
    assert read_lease(store, RUN).token == lease.token  # type: ignore[union-attr]



def test_the_settle_wait_fits_the_store(tmp_path: Path) -> None:
    """A local folder's writes take milliseconds: its contenders wait a quarter second, not the
    two seconds a B2 upload is given."""
    waits: list[float] = []
    RunLease(LocalStore(tmp_path), "r-local", "flow run 'a'", sleep=waits.append).acquire()
    b2, _ = make_b2_store()
    RunLease(b2, "r-b2", "flow run 'b'", sleep=waits.append).acquire()
    assert waits == [LOCAL_SETTLE_S, SETTLE_S]
