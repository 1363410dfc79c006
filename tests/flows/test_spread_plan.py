"""When a run spreads and how the nightly's days are cut: without a deployment nothing spreads
(and the API is not asked), asking for workers without a deployment fails with a clear message,
and the nightly's batches are even and bounded."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from prefect import flow

from flows.spread import fan_out
from tasks.errors import PlumblineError
from tasks.summaries.aggregate import DEFAULT_DAYS_PER_BATCH, even_batches

pytestmark = pytest.mark.prefect


def test_nothing_spreads_unless_asked_or_on_a_pool(prefect_harness: None) -> None:
    @flow
    def decide(requested: int | None) -> tuple[int, bool]:
        parts, target = fan_out(requested, deployment="run-suite/run-suite", units=100_000,
                                min_units=1000)
        return parts, target is not None

    # `plumbline run`: no deployment, however big the run: in-process.
    assert decide(None) == (0, False)
    assert decide(1) == (0, False)
    with pytest.raises(PlumblineError, match=r"workers=3 spreads the work over child flow runs "
                       r"of the 'run-suite/run-suite' deployment, and this Prefect API has none"):
        decide(3)
    with pytest.raises(PlumblineError, match="workers must be 1 or more"):
        decide(0)


def test_the_nightlys_days_are_cut_into_even_bounded_batches() -> None:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(25)]
    assert [len(b) for b in even_batches(days, 4)] == [7, 6, 6, 6]
    # Never more than a batch's worth of days in one part, whatever `parts` says.
    assert [len(b) for b in even_batches(days, 1)] == [9, 8, 8]
    assert max(len(b) for b in even_batches(days * 1, 2)) <= DEFAULT_DAYS_PER_BATCH
    cut = even_batches(list(reversed(days)), 10)
    assert [d for b in cut for d in b] == days  # every day once, in order
    assert even_batches(days[:3], 8) == [[d] for d in days[:3]]
    assert even_batches([], 4) == []
