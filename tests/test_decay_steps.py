"""A decay run is a sequence of short steps, on SQLite and MariaDB: the lease is renewed before each
of them (adoption pages included), ``forget`` and ``restore`` interleave with a long run instead of
waiting for it, and the plug-in reaches the database only through the store's public methods
(``SqlStore.transaction`` among them)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from memory import StoreError
from memory.decay import Decay, DecayConfig, DecayScheduler

from .conftest import wait_for
from .test_decay import DAY, T0, add_events
from .test_decay import store as store  # noqa: F401 - the fixture, shared


class PublicOnly:
    """The real store, but any private attribute asked for is an error: what a plug-in may use."""

    def __init__(self, store: Any) -> None:
        object.__setattr__(self, "_store", store)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"decay reached into the store's private {name}")
        return getattr(object.__getattribute__(self, "_store"), name)


def test_transaction_commits_on_exit_rolls_back_on_error_and_maps_driver_errors(store: Any) -> None:
    add_events(store, "e1")
    with store.transaction() as cur:
        cur.execute("UPDATE events SET session_key = 's2' WHERE event_id = 'e1'")
    assert store.get_event("e1")[2] == "s2"
    with pytest.raises(StoreError), store.transaction() as cur:
        cur.execute("UPDATE events SET session_key = 's3' WHERE event_id = 'e1'")
        raise ValueError("a bad value for the driver")
    assert store.get_event("e1")[2] == "s2"  # rolled back

    class Stop(BaseException):
        pass

    with pytest.raises(Stop), store.transaction() as cur:
        cur.execute("UPDATE events SET session_key = 's3' WHERE event_id = 'e1'")
        raise Stop
    assert store.get_event("e1")[2] == "s2"
    with pytest.raises(StoreError), store.transaction() as cur:
        cur.execute("UPDATE events SET session_key = 's4' WHERE event_id = 'e1'")
        cur.execute("SELECT no_such_column FROM events")
    assert store.get_event("e1")[2] == "s2"


def test_decay_uses_only_the_stores_public_methods(store: Any, tmp_path: Any) -> None:
    add_events(store, "e1", "e2", "e3")
    store.upsert_notes("knowledge", [
        ("facts/pin", "facts", "knowledge/facts/pin.md", "pin", "body", "[]", "[]", "[]", None, "d" * 64, 1, T0)])
    d = Decay(PublicOnly(store), DecayConfig(enabled=True, initial_zones={"event": 4, "knowledge": 4}),
              vault_root=tmp_path)
    d.run(now=T0)
    assert d.run(now=T0, dry_run=True).adopted == 0
    # The note got pinned in the vault after its state row was written: the run pins its row.
    store.upsert_notes("knowledge", [
        ("facts/pin", "facts", "knowledge/facts/pin.md", "pin", "body", "[]", "[]", "[]", '{"pinned": true}',
         "d" * 64, 1, T0)])
    # (same updated_at: the refresh does not read it again, so only the forget scan sees the pin)
    report = d.run(now=T0 + 200 * DAY)
    assert sorted(report.forgotten) == ["e1", "e2", "e3"]
    assert store.item_state("knowledge", "facts/pin").pinned
    assert d.restore("e2").ok and d.forget("e2").ok
    assert d.health()[1] == ()


class SlowAdoption:
    """The real store's adoption, each page taking ``page_s`` of an injected wall clock. Another
    process's attempts on the lease happen when the run reads the clock (between its steps: on
    SQLite a write inside the run's transaction would only wait for it)."""

    def __init__(self, store: Any, page_s: float) -> None:
        self.store, self.page_s, self.now, self.pages = store, page_s, T0, 0
        self.attempts: list[bool] = []
        self.take_over_after: int | None = None  # pages after which another process takes the lease
        self._adopt = store.adopt_events
        store.adopt_events = self.adopt_page

    def adopt_page(self, *args: Any, **kwargs: Any) -> Any:
        self.pages += 1
        self.now += self.page_s
        return self._adopt(*args, **kwargs)

    def wall(self) -> float:
        if self.pages and self.take_over_after is None:
            self.attempts.append(self.store.take_lease("decay", "another-process", self.now, 2.0))
        elif self.take_over_after is not None and self.pages >= self.take_over_after and not self.attempts:
            self.now += 10.0  # the run stalled for longer than its lease
            self.attempts.append(self.store.take_lease("decay", "another-process", self.now, 60.0))
        return self.now


def test_the_lease_is_renewed_during_adoption_so_no_second_runner_gets_in(store: Any) -> None:
    # Regression: the lease was renewed only between forget/demote batches. A first run adopting
    # many pages outlived lease_ttl and another process took the lease in the middle of it.
    add_events(store, *[f"e{i:02d}" for i in range(20)])
    slow = SlowAdoption(store, page_s=1.5)  # every page takes 1.5 s of the 2 s lease
    d = Decay(store, DecayConfig(enabled=True, batch_size=2, lease_ttl_s=2.0))
    report = d.run_leased("first", wall=slow.wall)
    assert report is not None and report.aborted is None and report.adopted == 20
    assert slow.pages >= 10 and len(slow.attempts) >= 10 and not any(slow.attempts), slow.attempts
    lease = store.lease("decay")
    assert lease.holder == "first" and lease.last_run_at == T0


def test_a_run_stops_when_its_lease_is_lost_during_adoption(store: Any) -> None:
    add_events(store, *[f"e{i:02d}" for i in range(20)])
    slow = SlowAdoption(store, page_s=0.5)
    slow.take_over_after = 3
    d = Decay(store, DecayConfig(enabled=True, batch_size=2, lease_ttl_s=2.0))
    report = d.run_leased("first", wall=slow.wall)
    assert slow.attempts == [True]
    assert report is not None and report.aborted is not None and "lease" in report.aborted
    assert slow.pages == 3 and report.adopted == 6  # no page after the lease was lost
    assert store.lease("decay").holder == "another-process"


def test_forget_returns_while_a_long_run_is_in_progress(store: Any) -> None:
    # Regression: the plug-in's lock was held for a whole run, so forget/restore waited for it.
    add_events(store, "target")
    add_events(store, *[f"e{i:04d}" for i in range(300)], ts=T0 + 1)
    real_adopt = store.adopt_events
    pages = [0]
    started = threading.Event()

    def slow_page(*args: Any, **kwargs: Any) -> Any:
        pages[0] += 1
        started.set()
        time.sleep(0.02)  # a long run: ~150 pages of 20 ms
        return real_adopt(*args, **kwargs)

    store.adopt_events = slow_page
    d = Decay(store, DecayConfig(enabled=True, batch_size=2))
    reports: list[Any] = []
    runner = threading.Thread(target=lambda: reports.append(d.run(now=T0 + DAY)))
    runner.start()
    try:
        assert started.wait(30)
        res = d.forget("target", "asked to")
        at_forget = pages[0]
        assert res.ok, res
        back = d.restore("target")
        assert back.ok, back
        assert runner.is_alive() and at_forget < 100, at_forget  # far from the run's ~150 pages
    finally:
        runner.join(60)
    assert reports and reports[0].aborted is None and reports[0].adopted == 300  # target: restored meanwhile
    assert store.get_event("target") is not None and store.tombstones_of("target") == []


def test_the_scheduler_thread_outlives_failing_runs_and_stops_in_time(store: Any) -> None:
    from memory._loop import LoopThread

    add_events(store, "e1")
    d = Decay(store, DecayConfig(enabled=True, interval_s=1.0))  # a failed run is retried after 1 s
    calls = [0]
    real = d.run_leased

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("a bug in a run")
        return real(*args, **kwargs)

    d.run_leased = flaky  # type: ignore[method-assign]
    d.start()
    sched = d.scheduler
    assert sched is not None
    try:
        assert wait_for(lambda: sched.runs >= 1, 30) and sched.running
        assert sched.errors == 1
        assert sched.last_error == "RuntimeError: a bug in a run"
    finally:
        t = time.monotonic()
        d.stop(timeout=5)
    assert not sched.running and time.monotonic() - t < 5

    # The bare loop: an error handler that fails itself does not end the thread either.
    seen: list[str] = []

    def step() -> float:
        seen.append("step")
        if len(seen) < 3:
            raise ValueError("step failed")
        return 0.01

    def on_error(exc: Exception) -> float:
        raise KeyError("the handler failed too")

    loop = LoopThread("test-loop", step, on_error)
    loop.start()
    assert wait_for(lambda: len(seen) >= 4, 30) and loop.running
    loop.stop(timeout=5)
    assert not loop.running


def test_a_failed_run_is_retried_soon_then_less_often(store: Any) -> None:
    # Regression: a run failing as a service starts (the writer thread creates the schema while
    # the scheduler's first run looks for its tables) was retried only a minute later.
    d = Decay(store, DecayConfig(enabled=True, interval_s=3600))
    clock = [0.0]
    sched = DecayScheduler(d, clock=lambda: clock[0], wall=lambda: T0 + clock[0], holder="one")
    real = d.run_leased
    failing = [True]

    def run_leased(*args: Any, **kwargs: Any) -> Any:
        if failing[0]:
            raise StoreError("no such table: decay_lease")
        return real(*args, **kwargs)

    d.run_leased = run_leased  # type: ignore[method-assign]
    waits = []
    for _ in range(8):
        with pytest.raises(StoreError):
            sched.loop_once()
        waits.append(sched.due_in())
        clock[0] += sched.due_in()
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    failing[0] = False
    assert sched.loop_once() is not None and sched.failures == 0 and sched.due_in() == 3600


def test_a_waiting_request_goes_before_the_runs_next_step() -> None:
    # Regression: the step lock was a plain Lock; a run re-taking it right after each step starved
    # a waiting forget for the whole run (seen on a loaded machine: forget returned after page 152
    # of 152). Requests first: the run's next step waits until the waiting request is done.
    from memory.decay._plugin import _Steps

    steps, order = _Steps(), []
    in_step, requested = threading.Event(), threading.Event()

    def request() -> None:
        requested.set()
        with steps.request():
            order.append("request")

    with steps.step():
        in_step.set()
        t = threading.Thread(target=request)
        t.start()
        assert requested.wait(5)
        assert wait_for(lambda: steps._waiting == 1, 5)
        order.append("step 1")
    with steps.step():  # at once, from the thread that just let go
        order.append("step 2")
    t.join(5)
    assert order == ["step 1", "request", "step 2"], order
    # Patience: a request that never ends cannot hold a run's step for good.
    slow = _Steps(patience=0.2)
    slow._waiting = 1  # a request counted but stuck before the lock
    started = time.monotonic()
    with slow.step():
        pass
    assert 0.15 < time.monotonic() - started < 5
