"""SIGKILL at random moments while the database flaps: 0 lost, 0 duplicated."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from crashloop import run_crash_loop, sqlite_flapper  # noqa: E402


@pytest.mark.slow
def test_crash_loop_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    result = run_crash_loop(tmp_path, f"sqlite:///{db}", cycles=20, seed=7, flapper=sqlite_flapper(db))
    assert result["acknowledged"] > 1000, result
    assert result["drained"] and result["check_problems"] == [], result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["wrongly_dead"] == 0 and result["poison_in_db"] == 0, result
    assert result["quarantined"] <= 2 * result["cycles"], result  # at most a torn tail or two per kill
