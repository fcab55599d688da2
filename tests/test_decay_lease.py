"""One decay runner at a time, across real processes, through the lease row in the database.

Three processes racing for a due run: exactly one runs. A holder SIGKILLed in the middle of its
run keeps the lease until it expires, then another process takes over. The scheduler steps with
an injected clock; its thread starts, runs and stops within a bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memory.decay import Decay, DecayConfig, DecayScheduler

from .conftest import wait_for
from .test_decay import DAY, T0, add_events
from .test_decay import store as store  # noqa: F401 - the fixture, shared

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[4])
from tests.test_decay import decay_store
from memory.decay import Decay, DecayConfig, DecayScheduler

dsn, mode, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = decay_store(dsn)

class Held(Decay):
    def run(self, *args, **kwargs):
        print("running", flush=True)
        # Hold the lease while the other racers try (or forever, until SIGKILL).
        time.sleep(600 if mode == "hang" else 1.0)
        return super().run(*args, **kwargs)

sched = DecayScheduler(Held(store, DecayConfig(enabled=True, lease_ttl_s=2)), holder=f"proc-{os.getpid()}")
while time.time() < start_at:
    time.sleep(0.001)
report = sched.loop_once()
print(json.dumps({"ran": report is not None, "adopted": report.adopted if report else None}), flush=True)
"""


def spawn(tmp_path: Path, dsn: str, mode: str, start_at: float) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)
    return subprocess.Popen([sys.executable, str(script), dsn, mode, repr(start_at), root], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=root)


def test_lease_semantics(store: Any) -> None:
    assert store.take_lease("decay", "a", T0, 10)
    assert not store.take_lease("decay", "b", T0 + 5, 10)  # held by a
    assert store.take_lease("decay", "a", T0 + 5, 10)  # a again: renewal by taking
    assert store.renew_lease("decay", "a", T0 + 12, 10) and not store.renew_lease("decay", "b", T0 + 12, 10)
    assert not store.take_lease("decay", "b", T0 + 21, 10)
    assert store.take_lease("decay", "b", T0 + 22.5, 10)  # expired at T0 + 22: b takes over
    assert not store.renew_lease("decay", "a", T0 + 23, 10)  # a learns it lost
    assert store.release_lease("decay", "b", T0 + 23, '{"demoted": 1}')
    lease = store.lease("decay")
    assert (lease.holder, lease.expires_at, lease.last_run_at) == ("b", 0.0, T0 + 23)
    # A run recorded within the interval: nobody runs again before it is due.
    assert not store.take_lease("decay", "c", T0 + 100, 10, min_interval=3600)
    assert store.take_lease("decay", "c", T0 + 23 + 3600, 10, min_interval=3600)


def test_three_processes_racing_run_decay_once(store: Any, dsn: str, tmp_path: Path) -> None:
    add_events(store, "e1", "e2", "e3")
    start_at = time.time() + 4.0  # every child imported and connected by then
    procs = [spawn(tmp_path, dsn, "race", start_at) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r["ran"] for r in results) == [False, False, True], outs
    assert [r["adopted"] for r in results if r["ran"]] == [3]
    assert sum(o[0].count("running") for o in outs) == 1  # the losers never entered a run
    lease = store.lease("decay")
    assert lease.last_run_at is not None and lease.expires_at == 0.0
    assert json.loads(lease.last_result)["adopted"] == 3


def test_a_killed_holders_lease_is_taken_over_after_it_expires(store: Any, dsn: str, tmp_path: Path) -> None:
    add_events(store, "e1")
    proc = spawn(tmp_path, dsn, "hang", time.time())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        holder = store.lease("decay").holder
        assert holder == f"proc-{proc.pid}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = time.time()
    sched = DecayScheduler(Decay(store, DecayConfig(enabled=True, lease_ttl_s=2)), holder="survivor")
    assert sched.loop_once() is None  # the dead holder's lease has not expired yet
    assert store.lease("decay").holder == holder

    def takes_over() -> bool:
        sched.initialize()  # due again now
        return sched.loop_once() is not None

    assert wait_for(takes_over, timeout=30)
    assert time.time() >= killed_at + 0.5  # not before the lease ran out
    assert store.lease("decay").last_run_at is not None and store.item_state("event", "e1") is not None


def test_scheduler_steps_by_its_clock(store: Any) -> None:
    add_events(store, "e1")
    clock, wall = [0.0], [T0]
    d = Decay(store, DecayConfig(enabled=True, interval_s=3600, initial_zones={"event": 2, "knowledge": 1}))
    sched = DecayScheduler(d, clock=lambda: clock[0], wall=lambda: wall[0], holder="one")
    sched.initialize()
    assert sched.loop_once() is not None and sched.runs == 1
    assert sched.loop_once() is None and sched.due_in() == 3600  # not due
    clock[0], wall[0] = 3600.0, T0 + 31 * DAY
    report = sched.loop_once()
    assert report is not None and report.demoted == (("e1", 2, 3),)
    # Another process's scheduler finds the recorded run and waits for the rest of the interval.
    other = DecayScheduler(d, clock=lambda: clock[0], wall=lambda: wall[0] + 600, holder="two")
    assert other.loop_once() is None and other.due_in() == pytest.approx(3000)
    assert d.health(sched)[0]["last_run_at"] == T0 + 31 * DAY


def test_scheduler_thread_starts_runs_and_stops(store: Any) -> None:
    add_events(store, "e1")
    d = Decay(store, DecayConfig(enabled=True, interval_s=3600))
    d.start()
    try:
        assert d.scheduler is not None and wait_for(lambda: d.scheduler.runs == 1, timeout=30)  # type: ignore[union-attr]
        assert d.health()[0]["scheduler_running"] is True
    finally:
        d.stop(timeout=5)
    assert not d.scheduler.running and d.health()[0]["scheduler_running"] is False
    d.stop()  # twice is fine
