"""The drift window's bounds and the config's validation."""

from __future__ import annotations

from datetime import date

import pytest

from tasks.drift.config import DriftConfig, Window


def test_windows_default_to_seven_and_twenty_eight_days() -> None:
    w = Window.ending(date(2026, 11, 30), DriftConfig())
    assert w.recent_start == date(2026, 11, 24) and w.baseline_end == date(2026, 11, 23)
    assert w.baseline_start == date(2026, 10, 27) and len(w.days()) == 35
    with pytest.raises(ValueError, match="recent_days"):
        DriftConfig(recent_days=0)
