"""A Hypothesis state machine of the write queue against a small model.

Operations: append (good and poison records), the database going down (a real exclusive lock
on the SQLite file) and coming back, writer steps with an injected clock, a crash (the process
state is abandoned exactly as ``kill -9`` would leave the files: no seal, no state save, lock
released), a restart on the same folder, and corruption of a byte in an unresolved segment.

Model: every acknowledged id ends in the database or the dead-letter file, exactly once, except
ids whose record bytes were corrupted before they were resolved (those may be lost, and are
then quarantined and counted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from memory import load_config
from memory._records import EVENT
from memory.queue._segments import HEADER_LEN, Record, read_segment
from memory.queue._writer import WriteQueue
from memory.store import create_store


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="qmodel-"))
        self.db = self.dir / "m.db"
        self.cfg = load_config({
            "database": {"dsn": f"sqlite:///{self.db}", "sqlite_busy_timeout": 0.01},
            "failure_queue": {"path": str(self.dir / "q"), "max_in_memory": 7, "spill_batch_size": 3,
                              "batch_size": 5, "max_dump_file_size_mb": 0.002, "max_retries": 2,
                              "retry_base_delay_s": 1, "retry_max_delay_s": 2, "fsync": "never"}})
        self.store = create_store(self.cfg.database)
        self.store.initialize()
        self.store.execute("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.session_key = 'poison' "
                           "BEGIN SELECT RAISE(ABORT, 'poison'); END")
        self.clock = Clock()
        self.q = self._new_queue()
        self.acked: dict[str, bool] = {}  # id -> poison?
        self.may_lose: set[str] = set()
        self.locker: sqlite3.Connection | None = None
        self.n = 0

    def _new_queue(self) -> WriteQueue:
        q = WriteQueue(self.cfg.failure_queue, self.store, clock=self.clock, warn_interval=1e9)
        q.initialized = True
        return q

    @rule(count=st.integers(1, 12), poison=st.booleans())
    def append(self, count: int, poison: bool) -> None:
        for k in range(count):
            bad = poison and k == 0
            rid = f"{self.n:026x}"
            self.n += 1
            self.q.submit(EVENT, (rid, 1.0, "poison" if bad else "ok", json.dumps({"n": self.n}), None, None))
            self.acked[rid] = bad

    @precondition(lambda self: self.locker is None)
    @rule()
    def database_down(self) -> None:
        self.locker = sqlite3.connect(self.db, isolation_level=None)
        self.locker.execute("BEGIN EXCLUSIVE")

    @precondition(lambda self: self.locker is not None)
    @rule()
    def database_up(self) -> None:
        assert self.locker is not None
        self.locker.execute("ROLLBACK")
        self.locker.close()
        self.locker = None

    @rule(steps=st.integers(1, 6))
    def writer_steps(self, steps: int) -> None:
        for _ in range(steps):
            self.q.loop_once(self.clock.now)
            self.clock.now += 2.5  # past any backoff

    @rule()
    def crash_and_restart(self) -> None:
        self.q.abandon()  # exactly what kill -9 leaves: no seal, no state save; the lock goes with the fd
        self.q = self._new_queue()

    @rule(data=st.data())
    def corrupt_unresolved_byte(self, data: st.DataObject) -> None:
        mark = self.q.watermark()
        segs = [s for s in self.q.journal.segments() if s >= mark[0] and s != self.q.journal.active]
        if not segs:
            return
        seg = data.draw(st.sampled_from(segs))
        path = self.q.journal.path_of(seg)
        found, _ = read_segment(path, seg, HEADER_LEN, None, 10_000, final=True)
        records = [r for r in found if isinstance(r, Record) and (seg, r.offset) >= mark]
        if not records:
            return
        victim = data.draw(st.sampled_from(records))
        raw = bytearray(path.read_bytes())
        raw[data.draw(st.integers(victim.offset, victim.end - 1))] ^= 0x5A
        path.write_bytes(bytes(raw))
        self.may_lose.add(victim.row[0])

    @invariant()
    def database_holds_only_acknowledged_good_records(self) -> None:
        if self.locker is not None:
            return
        ids = self.store.existing_ids("events", list(self.acked))
        assert all(not self.acked[i] for i in ids)

    def teardown(self) -> None:
        try:
            if self.locker is not None:
                self.database_up()
            for _ in range(400):
                self.q.loop_once(self.clock.now)
                self.clock.now += 2.5
                head = self.q.journal.head()
                if self.q.drained(head):
                    break
            in_db = self.store.existing_ids("events", list(self.acked))
            dead = [json.loads(x)["row"][0] for x in (self.dir / "q" / "dead-letter.jsonl").read_text().splitlines()] \
                if (self.dir / "q" / "dead-letter.jsonl").exists() else []
            assert len(dead) == len(set(dead)), "a dead letter was written twice"
            assert not (set(dead) & in_db), "a record is both committed and dead-lettered"
            for rid, poison in self.acked.items():
                if rid in self.may_lose:
                    continue
                if poison:
                    assert rid in dead, f"poison record {rid} not dead-lettered"
                else:
                    assert rid in in_db, f"acknowledged record {rid} lost"
            if self.may_lose - in_db - set(dead):  # a loss is never silent: the bytes are kept aside
                assert list((self.dir / "q" / "quarantine").iterdir())
        finally:
            with contextlib.suppress(Exception):
                self.q.close(timeout=0.1)
            self.store.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)


QueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                          suppress_health_check=list(HealthCheck))
TestQueueModel = QueueMachine.TestCase
