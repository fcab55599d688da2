"""The queue at the lifecycle edges: slot state vs files, adoption, crash loops, fsync cadence,
close with a stuck writer, locks that fail, unusable folders, a full disk bound at restart.

Each test reproduces one way the promise used to break, with real processes, files and locks;
a fake appears only where a fault cannot be produced for real (a file system whose ``flock``
fails, a short ``write()``), at the lowest layer.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService, load_config
from memory.queue._slot import LOCK_FILE
from memory.store import create_store

from .conftest import db_ids, service_config, wait_for

DEAD_DSN = "mysql+pymysql://root@127.0.0.1:1/nothing"  # refused at once: an outage

# A child that appends, prints what it saw acknowledged, and dies by SIGKILL (no close()).
CHILD = r"""
import json, os, signal, sys, time
from memory import MemoryService
cfg, n, settle = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
svc = MemoryService.from_config(cfg)
ids = [svc.append_event({"i": i, "pad": "q" * 60}, "s").event_id for i in range(n)]
if settle:
    svc.flush(60)
    time.sleep(settle)  # state.json saved with the watermark
print(json.dumps({"ids": ids, "slot": str(svc.queue.slot.path) if svc.queue.slot else None}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_child(cfg: dict[str, Any], n: int, settle: float = 0.0) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), str(n), str(settle)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def services() -> Iterator[Callable[..., MemoryService]]:
    made: list[MemoryService] = []

    def make(cfg: dict[str, Any], **kw: Any) -> MemoryService:
        svc = MemoryService.from_config(cfg, **kw)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close(timeout=2)


# -- 2. slot state that disagrees with the files; adoption ------------------------------------------------
def test_new_segments_stay_above_a_saved_watermark_whose_segments_are_gone(
        tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = service_config(dsn, tmp_path, max_dump_file_size_mb=0.01)
    first = services(cfg)
    for i in range(1500):  # many segments: the watermark ends far from segment 1
        first.append_event({"i": i, "pad": "w" * 60}, "s")
    assert first.flush(60)
    # A dead peer left unread records in another slot (an outage, then SIGKILL).
    peer = killed_child(service_config(DEAD_DSN, tmp_path, max_dump_file_size_mb=0.01), 400)
    assert peer["slot"] and not peer["slot"].endswith("slot-0")
    first.close()
    slot0 = tmp_path / "queue" / "slot-0"
    mark = json.loads((slot0 / "state.json").read_text())["watermark"]
    assert mark[0] > 3
    for seg in slot0.glob("seg-*.log"):  # state survives, segments do not (e.g. an empty one removed)
        seg.unlink()
    # The next start claims slot-0 and adopts the peer's segments: they must be numbered above
    # the old watermark, or start-up would take them for resolved ones and delete them unread.
    again = services(cfg)
    assert again.flush(60)
    assert db_ids(dsn, peer["ids"]) == set(peer["ids"])
    assert again.check() == []


def test_adoption_keeps_the_adopted_slots_watermark(tmp_path: Path,
                                                    services: Callable[..., MemoryService]) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = service_config(dsn, tmp_path)
    holder = services(cfg)  # keeps slot-0, so the others take slot-1 and slot-2
    holder.append_event({"hold": 1}, "h")
    b_svc = services(service_config(DEAD_DSN, tmp_path), start_writer=False)  # slot-1: nothing sent
    b = {"ids": [b_svc.append_event({"b": i}, "b").event_id for i in range(10)]}
    d = killed_child(cfg, 300, settle=1.0)  # slot-2: everything committed, watermark saved, then killed
    assert d["slot"].endswith("slot-2"), d["slot"]
    b_svc.queue.abandon()  # B dies the way kill -9 leaves things (its lock goes with its descriptor)
    assert db_ids(dsn, d["ids"]) == set(d["ids"])
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    store.execute("DELETE FROM events WHERE session_key = 's'")  # the rows are deleted since
    store.dispose()
    # The next start reuses slot-1 and adopts slot-2 with its watermark: D's committed records
    # are not replayed, so the deleted rows stay deleted (only B's unsent ones are written).
    again = services(cfg)
    assert again.queue.slot is not None and again.queue.slot.path.name == "slot-1"
    assert again.flush(60)
    assert db_ids(dsn, d["ids"]) == set()
    assert db_ids(dsn, b["ids"]) == set(b["ids"])
    assert again.health()["queue"]["recovered"] == len(b["ids"])
    assert again.check() == []


# -- 3. a crash loop during an outage must not fill the disk bound ---------------------------------------
def test_crash_loop_during_an_outage_does_not_fill_the_disk_bound(tmp_path: Path,
                                                                   services: Callable[..., MemoryService]) -> None:
    cfg = service_config(DEAD_DSN, tmp_path, max_dump_file_size_mb=1, max_disk_mb=6)
    acked: list[str] = []
    for _ in range(20):  # each start used to preallocate 1 MB that no later run trimmed or reused
        acked += killed_child(cfg, 40)["ids"]
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    again = services(service_config(dsn, tmp_path, max_dump_file_size_mb=1, max_disk_mb=6))
    assert again.flush(60)
    q = again.health()["queue"]
    assert q["dropped"] == {}, q
    assert db_ids(dsn, acked) == set(acked)
    assert again.check() == []


# -- 5. the fsync bound does not depend on the database ---------------------------------------------------
def test_interval_fsync_keeps_its_cadence_while_the_writer_sleeps_out_an_outage(
        tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    cfg = service_config(DEAD_DSN, tmp_path, fsync="interval", fsync_interval_ms=100, breaker_threshold=1)
    cfg["failure_queue"].update(retry_base_delay_s=60, retry_max_delay_s=60)
    svc = services(cfg)
    assert wait_for(lambda: svc.queue.breaker.failures >= 1, 30)
    assert svc.queue.breaker.retry_at - time.monotonic() > 20  # the writer now sleeps ≥ 30 s
    for round_ in range(3):
        svc.append_event({"round": round_}, "s")
        assert svc.queue.journal.dirty
        # synced by the fsync thread long before the writer wakes up
        assert wait_for(lambda: not svc.queue.journal.dirty, 10)


# -- 6. close() never lets go of a slot its writer still uses ---------------------------------------------
def test_close_with_a_stuck_writer_keeps_the_slot_until_the_writer_is_done(
        tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    db = tmp_path / "m.db"
    dsn = f"sqlite:///{db}"
    cfg = service_config(dsn, tmp_path)
    cfg["database"]["sqlite_busy_timeout"] = 6
    svc = services(cfg, start_writer=False)
    svc.initialize()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the writer's first batch will wait up to 6 s for the lock
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(20)]
    svc.queue.start()
    assert wait_for(lambda: bool(svc.queue._inflight), 10)  # the batch is in the database call
    assert svc.close(timeout=0.2) is False  # could not finish; the writer is still inside
    other = services(cfg)  # a new service in the same folder must not get the busy slot
    assert other.queue.slot is not None and other.queue.slot.path.name != "slot-0"
    locker.execute("ROLLBACK")
    locker.close()

    def slot0_free() -> bool:
        fd = os.open(tmp_path / "queue" / "slot-0" / LOCK_FILE, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    assert wait_for(slot0_free, 30)  # the writer released it once its call returned
    assert db_ids(dsn, ids) == set(ids)
    assert other.flush(30) and other.check() == []


# -- 7. the memory window, the write() fallback, dead letters vs maintenance ------------------------------
def test_trim_by_sequence_never_drops_a_pending_record_under_concurrent_eviction() -> None:
    from memory.queue._item import Item
    from memory.queue._window import MemoryWindow

    w = MemoryWindow(10)
    for i in range(10):
        w.append(Item(1, 16 + i * 10, 26 + i * 10, 1, (str(i),)))
    batch = w.take(6)  # the writer takes the first six
    for i in range(10, 14):  # four appends evict four of them meanwhile
        w.append(Item(1, 16 + i * 10, 26 + i * 10, 1, (str(i),)))
    w.trim_through(batch[-1].n)  # the batch is written: trim what is left of it
    assert [it.row[0] for it in w.snapshot()] == [str(i) for i in range(6, 14)]
    snap = w.snapshot()
    for i in range(14, 40):  # a snapshot stays exactly what it was while appends go on
        w.append(Item(1, 0, 0, 1, (str(i),)))
    assert [it.row[0] for it in snap] == [str(i) for i in range(6, 14)]
    assert len(w) == 10 and w.first().row[0] == "30"  # type: ignore[union-attr]


def test_read_your_writes_holds_for_the_newest_records_while_the_writer_trims(
        tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    # One appender (so the newest 64 records are exactly its last 64) races the writer, whose
    # trims of written batches interleave with the appender's evictions of the window's oldest.
    svc = services(service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, max_in_memory=64, batch_size=16))
    svc.initialize()
    misses: list[str] = []
    recent: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        recent.append(svc.append_event({"t": 1}, "s").event_id)
        recent = recent[-32:]
        for rid in recent:  # pending in the window, or committed: never neither
            if svc.get_event(rid) is None:
                misses.append(rid)
    assert misses == []
    assert svc.flush(30) and svc.check() == []


def test_write_fallback_keeps_frames_contiguous_after_a_failed_write(
        tmp_path: Path, services: Callable[..., MemoryService], monkeypatch: pytest.MonkeyPatch) -> None:
    from memory.queue._segments import Damage, read_segment

    cfg = service_config(DEAD_DSN, tmp_path)
    svc = services(cfg, start_writer=False)
    svc.queue.journal.use_mmap = False  # a file system without preallocation: write() mode
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(5)]
    calls = {"n": 0}
    real_write, real_pwrite = os.write, os.pwrite

    def short(fd: int, data: Any, *rest: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # one short write (the disk filled up for a moment)
            n = len(data) // 2
            return real_pwrite(fd, bytes(data)[:n], rest[0]) if rest else real_write(fd, bytes(data)[:n])
        return real_pwrite(fd, data, *rest) if rest else real_write(fd, data)

    monkeypatch.setattr(os, "write", short)
    monkeypatch.setattr(os, "pwrite", short)
    svc.append_event({"torn": True}, "s")  # fails: held in memory instead
    monkeypatch.setattr(os, "write", real_write)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    svc.queue.journal.broken_until = 0.0
    ids += [svc.append_event({"i": i}, "s").event_id for i in range(5, 10)]
    seg = svc.queue.journal.active
    found, _ = read_segment(svc.queue.journal.path_of(seg), seg, 16, None, 1000, final=True)
    assert not [f for f in found if isinstance(f, Damage)]  # no hole, no torn frame in the middle
    assert [f.row[0] for f in found] == ids  # type: ignore[union-attr]


POISON = ("CREATE TRIGGER IF NOT EXISTS poison BEFORE INSERT ON events WHEN NEW.session_key = 'poison' "
          "BEGIN SELECT RAISE(ABORT, 'poison'); END")


def test_dead_letter_purge_never_loses_entries_a_live_service_appends(
        tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = service_config(dsn, tmp_path, max_retries=1)
    svc = services(cfg)
    svc.initialize()
    svc.store.execute(POISON)
    cli = [sys.executable, "-m", "memory.cli"]
    cfg_file = tmp_path / "memory.yaml"
    cfg_file.write_text(json.dumps(cfg))  # JSON is YAML
    purged = 0
    stop = threading.Event()

    def poison() -> None:
        while not stop.is_set():
            svc.append_event({"bad": 1}, "poison")
            time.sleep(0.002)

    t = threading.Thread(target=poison)
    t.start()
    for _ in range(6):
        out = subprocess.run([*cli, "dead-letter", "purge", "--config", str(cfg_file), "--yes", "--json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        purged += json.loads(out.stdout)["purged"]
    stop.set()
    t.join()
    # Every poison record is bisected down to itself before it is dead-lettered: on a loaded
    # machine the writer needs a while for the thousands the thread appended. Correctness, not speed.
    assert svc.flush(180)
    left = (tmp_path / "queue" / "dead-letter.jsonl").read_text().splitlines()
    assert purged > 0
    assert purged + len(left) == svc.health()["queue"]["dead_lettered"]  # every dead letter accounted for


# -- 8. start-up is fail-open -----------------------------------------------------------------------------
ENOLCK_CHILD = r"""
import errno, fcntl, json, sys
real = fcntl.flock
def flock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")  # NFS without a lock daemon
fcntl.flock = flock
from memory import MemoryService
svc = MemoryService.from_config(json.loads(sys.argv[1]))
ids = [svc.append_event({"i": i}, "s").event_id for i in range(50)]
ok = svc.flush(60)
h = svc.health()
svc.close()
print(json.dumps({"ok": ok, "ids": ids, "journal": h["queue"]["journal"], "why": h["queue"]["journal_problem"],
                  "status": h["status"]}))
"""


def test_a_lock_that_fails_for_another_reason_gives_a_memory_only_service(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    proc = subprocess.run([sys.executable, "-c", ENOLCK_CHILD, json.dumps(service_config(dsn, tmp_path))],
                          capture_output=True, text=True, timeout=60)  # it used to loop forever
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] and out["journal"] == "memory-only" and "lock" in out["why"]
    assert out["status"] == "degraded"
    assert db_ids(dsn, out["ids"]) == set(out["ids"])
    assert len(list((tmp_path / "queue").glob("slot-*"))) <= 1


@pytest.mark.parametrize("make_bad", ["file", "unwritable_parent"])
def test_an_unusable_queue_folder_gives_a_working_degraded_service(
        make_bad: str, tmp_path: Path, services: Callable[..., MemoryService]) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = service_config(dsn, tmp_path)
    if make_bad == "file":
        (tmp_path / "queue").write_text("not a folder")
    else:
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder should be")
        cfg["failure_queue"]["path"] = str(blocker / "queue")
    svc = services(cfg)  # used to raise (so auto_init returned None: memory off)
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(30)]
    assert svc.flush(30)
    h = svc.health()
    assert h["queue"]["journal"] == "memory-only" and h["queue"]["journal_problem"]
    assert h["status"] == "degraded"
    assert db_ids(dsn, ids) == set(ids)
    assert svc.check() == []


# -- 15. after a restart at max_disk_mb, new records wait in memory, not in the drop count -----------------
def test_restart_at_the_disk_bound_holds_new_records_in_memory(tmp_path: Path,
                                                                services: Callable[..., MemoryService]) -> None:
    bound = {"max_dump_file_size_mb": 0.05, "max_disk_mb": 0.3, "max_in_memory": 500}
    full = services(service_config(DEAD_DSN, tmp_path, **bound))
    early = [full.append_event({"i": i, "pad": "d" * 100}, "s").event_id for i in range(4000)]
    assert full.health()["queue"]["dropped"].get("disk_full", 0) > 0  # the bound was reached
    full.close(timeout=0.2)
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    again = services(service_config(dsn, tmp_path, **bound), start_writer=False)
    late = [again.append_event({"late": i}, "s").event_id for i in range(200)]
    q = again.health()["queue"]
    assert q["dropped"] == {} and q["pending_memory"] >= 200  # held, not dropped
    again.queue.start()
    assert again.flush(60)
    assert db_ids(dsn, late) == set(late)
    kept = db_ids(dsn, early)
    dropped = full.health()["queue"]["dropped"]  # at the bound, then what memory held at close
    assert set(dropped) == {"disk_full", "memory_at_close"}, dropped
    assert len(kept) == len(early) - sum(dropped.values())
    assert again.check() == []


# -- check() beside a writer that deletes resolved segments ---------------------------------------------
def test_check_never_reports_a_segment_the_writer_just_deleted(tmp_path: Path,
                                                               services: Callable[..., MemoryService]) -> None:
    # check() snapshots the tracked segments, then looks at their files; the writer deletes a
    # resolved segment in between (it stops tracking it, then unlinks it). That is not damage.
    svc = services(service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, max_dump_file_size_mb=0.02,
                                  batch_size=50))
    svc.initialize()
    seen: list[str] = []
    stop = threading.Event()

    def checker() -> None:
        while not stop.is_set():
            seen.extend(p for p in svc.queue.check() if p.startswith("segment "))

    t = threading.Thread(target=checker)
    t.start()
    try:
        for i in range(6000):
            svc.append_event({"text": f"event {i} " + "x" * 200}, "s")
            if i % 200 == 0:
                time.sleep(0.01)  # let the writer resolve and delete segments while check() runs
        assert svc.flush(60)
    finally:
        stop.set()
        t.join()
    assert seen == [], seen[:5]
    assert svc.check() == []
