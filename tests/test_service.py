"""The behaviour suite: the MemoryService contract, against a SQLite file and a real MariaDB."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from memory import EventRecord, MemoryService, TurnRecord

Make = Callable[..., MemoryService]


class Action(enum.Enum):
    DELIVER = "deliver"


@dataclasses.dataclass
class Gate:
    action: Action
    score: Decimal
    reasons: tuple[str, ...]


def test_event_roundtrip_of_every_field(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    big = "x" * 200_000  # beyond MySQL TEXT's 64 KB
    obs = {"text": "héllo 🎉 你好 مرحبا", "nested": {"list": [1, 2.5, None, True], "deep": {"k": "v"}},
           "when": dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc), "blob": big}
    rec = svc.append_event(obs, "sess-α", Gate(Action.DELIVER, Decimal("0.75"), ("greeting",)), {"source": "test"})
    assert isinstance(rec, EventRecord)
    assert rec.session_key == "sess-α" and rec.gate == {"action": "deliver", "score": "0.75", "reasons": ["greeting"]}
    assert svc.flush(10)
    assert not svc.queue.pending_items()  # now it really comes from the database
    got = svc.get_event(rec.event_id)
    assert got is not None
    assert got.obs == {**obs, "when": "2026-11-21T12:00:00+00:00"}
    assert got.obs["blob"] == big
    assert got.gate == rec.gate and got.meta == {"source": "test"}
    assert abs(got.ts - rec.ts) < 1e-5 and got.session_key == "sess-α"


def test_turn_lifecycle_plan_none_and_error_cleared(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    ev = svc.append_event({"text": "hi"}, "s")
    turn = svc.append_turn("s", ev.event_id)
    assert isinstance(turn, TurnRecord) and turn.plan is None and turn.status == "running"
    svc.finish_turn(turn.turn_id, status="error", error="first try failed")
    assert svc.flush(10)
    got = svc.get_turn(turn.turn_id)
    assert got is not None and got.status == "error" and got.error == "first try failed" and got.plan is None
    svc.finish_turn(turn.turn_id, final_output_obs_id="out-1", status="ok", error=None)
    assert svc.flush(10)
    got = svc.get_turn(turn.turn_id)
    assert got is not None
    assert (got.status, got.error, got.final_output_obs_id) == ("ok", None, "out-1")
    assert got.plan is None and got.input_event_id == ev.event_id and got.finished_at is not None


def test_finish_before_turn_reached_database(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    turn = svc.append_turn("s", "e1", plan={"steps": [1, 2]})
    svc.finish_turn(turn.turn_id, status="ok")  # both still pending: same batch or the next
    pending = svc.get_turn(turn.turn_id)
    assert pending is not None and pending.status == "ok"
    assert svc.flush(10)
    got = svc.get_turn(turn.turn_id)
    assert got is not None and got.status == "ok" and got.plan == {"steps": [1, 2]}


def test_read_your_writes_before_the_writer_runs(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    svc.queue._stop.set()  # hold the writer: everything stays pending in memory
    svc.queue.wake()
    svc.queue._thread.join(5)  # type: ignore[union-attr]
    ev = svc.append_event({"n": 1}, "s")
    turn = svc.append_turn("s", ev.event_id)
    svc.finish_turn(turn.turn_id, status="error", error="x")
    assert svc.get_event(ev.event_id) == ev
    assert [e.event_id for e in svc.get_recent_events("s", 10)] == [ev.event_id]
    got = svc.get_turn(turn.turn_id)
    assert got is not None and got.status == "error"
    assert [t.turn_id for t in svc.get_recent_turns("s", 10)] == [turn.turn_id]
    svc.queue.start()  # let it drain so teardown reconciles


def test_recent_events_newest_first_no_duplicates_while_flushing(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn, batch_size=7)
    sent: list[str] = []
    stop = threading.Event()
    seen_problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            snapshot = list(sent)  # everything appended before the read must be in it
            got = [e.event_id for e in svc.get_recent_events("s", 1000)]
            if len(got) != len(set(got)):
                seen_problems.append(f"duplicate ids in one result: {len(got) - len(set(got))}")
            if got != sorted(got, reverse=True):
                seen_problems.append("not newest first")
            missing = set(snapshot) - set(got)
            if missing:
                seen_problems.append(f"{len(missing)} appended records missing from a read")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(400):
            sent.append(svc.append_event({"i": i}, "s").event_id)
            if i % 50 == 0:
                time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert svc.flush(10)
    assert seen_problems == []
    final = [e.event_id for e in svc.get_recent_events("s", 1000)]
    assert final == sorted(sent, reverse=True)
    assert [e.event_id for e in svc.get_recent_events("s", 5)] == sorted(sent, reverse=True)[:5]
    assert svc.get_recent_events("other", 5) == []


def test_records_survive_close_and_reopen(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn)
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(50)]
    t = svc.append_turn("s", ids[0])
    svc.finish_turn(t.turn_id, status="ok")
    assert svc.close() is True
    again = make_service(dsn)
    assert [e.event_id for e in again.get_recent_events("s", 100)] == sorted(ids, reverse=True)
    got = again.get_turn(t.turn_id)
    assert got is not None and got.status == "ok"


def test_ids_unique_under_threads_through_the_service(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        local = [svc.append_event({"t": 1}, "threads").event_id for _ in range(500)]
        with lock:
            out.extend(local)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(out) == len(set(out)) == 4000
    assert svc.flush(20)
    assert svc.store.count("events") == 4000


def test_bad_input_is_coerced_and_stored(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    loop: dict[str, object] = {}
    loop["me"] = loop
    weird = [svc.append_event(object(), None), svc.append_event(loop, 12345, gate_result=b"\xff", meta=[1, 2]),
             svc.append_event("plain string", "s" * 1000), svc.append_event({"bad": "\ud800 lone surrogate"}, "s")]
    t = svc.append_turn(None, None, plan=float("nan"), meta="m")
    svc.finish_turn(t.turn_id, status="bogus")
    assert svc.flush(10)
    for rec in weird:
        stored = svc.get_event(rec.event_id)
        assert stored is not None
    assert svc.get_event(weird[1].event_id).obs == {"me": "<cycle>"}  # type: ignore[union-attr]
    assert svc.get_event(weird[1].event_id).meta == {"value": [1, 2]}  # type: ignore[union-attr]
    got = svc.get_turn(t.turn_id)
    assert got is not None and got.status == "error" and got.error == "unknown status 'bogus'"
    assert got.plan == "NaN"
    assert svc.health()["queue"]["dead_lettered"] == 0


def test_closed_service_never_raises_and_counts_the_drop(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    svc.close()
    svc.close()  # idempotent
    rec = svc.append_event({"late": True}, "s")
    assert rec.event_id
    svc.finish_turn(svc.append_turn("s", rec.event_id).turn_id)
    assert svc.health()["queue"]["dropped"] == {"closed": 3}
    assert svc.health()["status"] == "closed"


def test_health_reports_reachability_and_pending(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    svc.append_event({"a": 1}, "s")
    assert svc.flush(10)
    h = svc.health()
    assert h["status"] == "ok" and h["database"]["reachable"] is True and h["pending"] == 0
    assert h["queue"]["accepted"] == h["queue"]["committed"] == 1


def test_close_runs_at_interpreter_exit(dsn: str, tmp_path: Path) -> None:
    """A process that forgets close() still flushes at exit: the rows are there before any replay."""
    import json
    import subprocess
    import sys

    from memory import load_config
    from memory.store import create_store

    from .conftest import service_config

    code = ("import json, sys\nfrom memory import MemoryService\n"
            "svc = MemoryService.from_config(json.loads(sys.argv[1]))\n"
            "print(json.dumps([svc.append_event({'i': i}, 'exit').event_id for i in range(300)]))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(service_config(dsn, tmp_path))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    try:
        assert store.existing_ids("events", ids) == set(ids)
    finally:
        store.dispose()


def test_lifetime_accounting_survives_restarts(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    for i in range(30):
        svc.append_event({"i": i}, "s")
    svc.close()
    again = make_service(dsn)
    for i in range(20):
        again.append_event({"i": i}, "s")
    assert again.flush(10)
    life = again.health()["queue"]["lifetime"]
    assert life["committed"] == 50 and life["runs"] == 2 and life["dead_lettered"] == 0
