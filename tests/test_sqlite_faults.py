"""SQLite trouble for real: locked by another process, made read-only, deleted underneath."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from memory import MemoryService

from .conftest import remount, wait_for

Make = Callable[..., MemoryService]

LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""



def test_database_locked_by_another_process(make_service: Make, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    svc = make_service(f"sqlite:///{db}")
    svc.initialize()
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        ids = [svc.append_event({"i": i}, "s").event_id for i in range(100)]  # returns at once
        assert svc.flush(0.3) is False  # the lock holds the writer back...
        assert [e.event_id for e in svc.get_recent_events("s", 200)][:1] == [max(ids)]
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(30)
    assert svc.flush(60)  # ...and everything lands once it is released
    assert svc.store.existing_ids("events", ids) == set(ids)
    assert svc.health()["queue"]["dead_lettered"] == 0


def test_database_on_a_file_system_remounted_read_only(make_service: Make, tmpfs: Callable[[int], Path]) -> None:
    mnt = tmpfs(64 * 1024)
    db = mnt / "m.db"
    svc = make_service(f"sqlite:///{db}")
    svc.append_event({"warm": True}, "s")
    assert svc.flush(30)
    svc._watcher.thread.join(30)  # type: ignore[union-attr]  # the start-up vault sync is done
    svc.store.dispose()  # no connection may hold the file open for writing across the remount
    remount(mnt, "ro")
    try:
        ids = [svc.append_event({"i": i}, "s").event_id for i in range(20)]
        assert wait_for(lambda: svc.queue.breaker.failures >= 2)
        assert svc.health()["queue"]["pending"] == 20
    finally:
        remount(mnt, "rw")
    assert svc.flush(60)
    assert svc.store.existing_ids("events", ids) == set(ids)
    assert svc.health()["queue"]["dead_lettered"] == 0


def test_database_made_read_only_by_the_engine(make_service: Make, tmp_path: Path) -> None:
    """A read-only database (``PRAGMA query_only``, the engine's own switch) rejects writes as
    transient; nothing is dead-lettered and everything lands when it is writable again."""
    db = tmp_path / "m.db"
    svc = make_service(f"sqlite:///{db}", max_retries=1)
    svc.initialize()
    from sqlalchemy import event

    read_only = {"on": True}

    @event.listens_for(svc.store.engine, "connect")
    def _ro(dbapi_conn: sqlite3.Connection, _rec: object) -> None:
        if read_only["on"]:
            dbapi_conn.execute("PRAGMA query_only=ON")

    svc.store.engine.dispose()  # new connections get the switch
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(20)]
    assert wait_for(lambda: svc.queue.breaker.failures >= 2)
    assert "readonly" in svc.queue.breaker.last_error.lower() or "read-only" in svc.queue.breaker.last_error.lower()
    read_only["on"] = False
    svc.store.engine.dispose()
    assert svc.flush(60)
    assert svc.store.existing_ids("events", ids) == set(ids)
    assert svc.health()["queue"]["dead_lettered"] == 0


def test_database_file_deleted_underneath(make_service: Make, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    svc = make_service(f"sqlite:///{db}")
    first = [svc.append_event({"i": i}, "s").event_id for i in range(10)]
    assert svc.flush(30)
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        if p.exists():
            p.unlink()
    later = [svc.append_event({"j": i}, "s").event_id for i in range(10)]
    assert svc.flush(60)
    assert db.exists()  # recreated, schema and all
    assert svc.store.existing_ids("events", later) == set(later)  # not written into the dead inode
    assert svc.store.existing_ids("events", first) == set()  # those went with the deleted file
