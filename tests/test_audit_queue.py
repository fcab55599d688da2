"""The writer's audit lines: outage start/end, replay start/end and dead letters.

The writer is stepped one iteration at a time with an injected clock against a real SQLite file
that another connection really locks (the outage), and a real audit log writes the lines.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from memory import load_config
from memory._audit import AuditLog
from memory._audit_events import EVENT_TYPES
from memory._config import AuditConfig
from memory._records import EVENT
from memory.queue._events import Mood, Observation, step
from memory.queue._writer import WriteQueue
from memory.store import create_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_queue(tmp_path: Path, clock: Clock, audit: AuditLog) -> WriteQueue:
    cfg = load_config({"database": {"dsn": f"sqlite:///{tmp_path / 'm.db'}", "sqlite_busy_timeout": 0.05},
                       "failure_queue": {"path": str(tmp_path / "q"), "retry_base_delay_s": 1,
                                         "retry_max_delay_s": 8, "breaker_threshold": 3, "max_retries": 2}})
    store = create_store(cfg.database)
    store.initialize()
    return WriteQueue(cfg.failure_queue, store, clock=clock, wall=clock, warn_interval=0, audit=audit)


def audit_log(tmp_path: Path) -> AuditLog:
    log = AuditLog(AuditConfig(enabled=True, path=tmp_path / "audit.jsonl"))
    log.initialize()
    return log


def lines(log: AuditLog, tmp_path: Path) -> list[dict[str, Any]]:
    log.loop_once()
    path = tmp_path / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def row(i: int, session: str = "s") -> tuple[object, ...]:
    return (f"{i:026x}", 1.0, session, "{}", None, None)


def test_an_outage_and_its_replay_are_one_line_each(tmp_path: Path) -> None:
    clock, log = Clock(), audit_log(tmp_path)
    q = make_queue(tmp_path, clock, log)
    q.loop_once(clock.now)  # the database answers at start-up: nothing waited, so no replay
    assert lines(log, tmp_path) == []
    for i in range(10):
        q.submit(EVENT, row(i))
    locker = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for _ in range(6):  # twice past the threshold: the outage starts once
        q.loop_once(clock.now)
        clock.now = q.breaker.retry_at
    got = lines(log, tmp_path)
    assert [x["event"] for x in got] == ["outage_start"], got
    assert got[0]["pending"] == 10 and "locked" in got[0]["error"]
    started = clock.now
    locker.execute("ROLLBACK")
    locker.close()
    clock.now += 5
    assert q.loop_once(clock.now) == 0.0
    q.loop_once(clock.now)
    got = lines(log, tmp_path)[1:]
    assert [x["event"] for x in got] == ["outage_end", "replay_start", "replay_end"], got
    assert got[0]["duration_s"] > 5 and got[1] == {**got[1], "records": 10, "cause": "outage"}
    assert got[2]["records"] == 10 and got[2]["duration_s"] == 0
    assert q.committed == 10 and clock.now > started
    q.close(timeout=1)
    log.close()


def test_records_of_an_earlier_run_are_a_start_up_replay(tmp_path: Path) -> None:
    clock, log = Clock(), audit_log(tmp_path)
    first = make_queue(tmp_path, clock, log)
    for i in range(7):
        first.submit(EVENT, row(i))
    first.abandon()  # the process died (kill -9) before writing anything
    q = make_queue(tmp_path, clock, log)
    q.loop_once(clock.now)
    q.loop_once(clock.now)
    got = lines(log, tmp_path)
    assert [x["event"] for x in got] == ["replay_start", "replay_end"], got
    assert got[0]["records"] == 7 and got[0]["cause"] == "start-up"
    assert q.committed == 7
    q.close(timeout=1)
    log.close()


def test_a_dead_letter_is_one_line_with_its_reason(tmp_path: Path) -> None:
    clock, log = Clock(), audit_log(tmp_path)
    q = make_queue(tmp_path, clock, log)
    q.initialized = True
    q.store.execute("CREATE TRIGGER t BEFORE INSERT ON events WHEN NEW.session_key = 'bad' "  # type: ignore[attr-defined]
                    "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
    q.submit(EVENT, row(1))
    q.submit(EVENT, row(2, "bad"))
    for _ in range(10):
        q.loop_once(clock.now)
        clock.now += 10
    assert q.dead_lettered == 1
    dead = [x for x in lines(log, tmp_path) if x["event"] == "dead_letter"]
    assert len(dead) == 1, dead
    assert dead[0]["id"] == f"{2:026x}" and dead[0]["kind"] == "event" and "refused by trigger" in dead[0]["error"]
    q.close(timeout=1)
    log.close()


def test_a_broken_audit_sink_never_reaches_the_writer(tmp_path: Path) -> None:
    class Broken:
        def emit(self, event: str, /, **fields: Any) -> None:
            raise OSError("disk on fire")

    clock = Clock()
    q = make_queue(tmp_path, clock, Broken())  # type: ignore[arg-type]
    for i in range(3):
        q.submit(EVENT, row(i))
    first = make_queue  # noqa: F841 - the queue above is the one under test
    q.loop_once(clock.now)
    q.loop_once(clock.now)
    assert q.committed == 3 and q.check() == []
    q.close(timeout=1)


def obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {"wall": 0.0, "initialized": True, "breaker_open": False, "error": "", "pending": 0,
                            "head": (1, 100), "drained_to": lambda pos: True}
    return Observation(**{**base, **kw})


@pytest.mark.parametrize("pending_at_start", [0, 4])
def test_step_rules(pending_at_start: int) -> None:
    mood, ev = step(Mood(), obs(initialized=False, breaker_open=True, error="down", pending=pending_at_start))
    assert [e[0] for e in ev] == ["outage_start"]
    mood, ev = step(mood, obs(initialized=False, breaker_open=True, pending=9))
    assert ev == ()  # an outage starts once
    # The outage ends with records waiting; the replay ends only when the target is drained.
    mood, ev = step(mood, obs(wall=30.0, pending=9, drained_to=lambda pos: False))
    assert [e[0] for e in ev] == ["outage_end", "replay_start"] and ev[0][1]["duration_s"] == 30.0
    mood, ev = step(mood, obs(wall=31.0, pending=3, drained_to=lambda pos: pos > (1, 100)))
    assert ev == ()
    mood, ev = step(mood, obs(wall=32.0, pending=2, drained_to=lambda pos: pos <= (1, 100)))
    assert [e[0] for e in ev] == ["replay_end"] and ev[0][1] == {"records": 9, "cause": "outage", "duration_s": 2.0}
    assert all(name in EVENT_TYPES for name in ("outage_start", "outage_end", "replay_start", "replay_end"))
