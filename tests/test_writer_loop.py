"""The writer, one iteration at a time with an injected clock, against a really locked SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memory import load_config
from memory._records import EVENT
from memory.queue._retry import Breaker, backoff
from memory.queue._writer import WriteQueue
from memory.store import create_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_queue(tmp_path: Path, clock: Clock) -> tuple[WriteQueue, Path]:
    db = tmp_path / "m.db"
    cfg = load_config({"database": {"dsn": f"sqlite:///{db}", "sqlite_busy_timeout": 0.05},
                       "failure_queue": {"path": str(tmp_path / "q"), "retry_base_delay_s": 1,
                                         "retry_max_delay_s": 8, "breaker_threshold": 3}})
    store = create_store(cfg.database)
    store.initialize()
    q = WriteQueue(cfg.failure_queue, store, clock=clock, warn_interval=0)
    calls = {"n": 0}
    real = store.write_batch

    def counting(*args: object, **kwargs: object) -> list[int]:
        calls["n"] += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    store.write_batch = counting  # type: ignore[method-assign]
    q.calls = calls  # type: ignore[attr-defined]
    return q, db


def row(i: int) -> tuple[object, ...]:
    return (f"{i:026x}", 1.0, "s", "{}", None, None)


def test_outage_backs_off_opens_the_breaker_and_recovers(tmp_path: Path) -> None:
    clock = Clock()
    q, db = make_queue(tmp_path, clock)
    q.initialized = True
    for i in range(10):
        q.submit(EVENT, row(i))
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    waits = []
    for _ in range(5):
        wait = q.loop_once(clock.now)
        assert q.loop_once(clock.now) > 0  # before retry_at nobody touches the database
        waits.append(wait)
        clock.now = q.breaker.retry_at
    assert q.calls["n"] == 5  # type: ignore[attr-defined]
    assert q.breaker.is_open and q.breaker.failures == 5
    assert "locked" in q.breaker.last_error
    for n, w in enumerate(waits, start=1):  # capped exponential backoff with jitter
        cap = min(8, 2 ** (n - 1))
        assert cap / 2 <= w <= cap
    locker.execute("ROLLBACK")
    locker.close()
    assert q.loop_once(clock.now) == 0.0
    assert not q.breaker.is_open and q.committed == 10
    assert q.store.count("events") == 10
    q.loop_once(clock.now + 1)
    assert q.check() == []
    q.close(timeout=1)


def test_retry_list_waits_its_backoff_then_dead_letters(tmp_path: Path) -> None:
    clock = Clock()
    q, _ = make_queue(tmp_path, clock)
    q.initialized = True
    q.store.execute("CREATE TRIGGER t BEFORE INSERT ON events WHEN NEW.session_key = 'bad' "  # type: ignore[attr-defined]
                    "BEGIN SELECT RAISE(ABORT, 'no'); END")
    q.submit(EVENT, row(1))
    q.submit(EVENT, (f"{2:026x}", 1.0, "bad", "{}", None, None))
    q.submit(EVENT, row(3))
    q.loop_once(clock.now)
    assert q.committed == 2 and len(q.retry) == 1  # the good ones did not wait for the bad one
    attempts = 1
    while q.retry:
        item = q.retry.items()[0]
        clock.now = item.next_at - 0.001
        before = q.calls["n"]  # type: ignore[attr-defined]
        q.loop_once(clock.now)
        assert q.calls["n"] == before  # type: ignore[attr-defined]  # not due yet: not retried
        clock.now = item.next_at
        q.loop_once(clock.now)
        attempts += 1
    assert attempts == q.cfg.max_retries and q.dead_lettered == 1
    clock.now += 1
    q.loop_once(clock.now)
    assert q.check() == []
    q.close(timeout=1)


def test_backoff_and_breaker_units() -> None:
    assert backoff(1, 0.5, 10, rand=lambda: 1.0) == 0.5
    assert backoff(4, 0.5, 10, rand=lambda: 1.0) == 4.0
    assert backoff(10, 0.5, 10, rand=lambda: 0.0) == 5.0
    b = Breaker(2, 1.0, 4.0, rand=lambda: 1.0)
    assert b.allow(0) and not b.is_open
    assert b.failure(0, "x") == 1.0 and not b.allow(0.5) and b.allow(1.0)
    b.failure(1.0, "y")
    assert b.is_open and b.opened == 1
    b.success()
    assert not b.is_open and b.allow(0)
