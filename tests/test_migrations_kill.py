"""Migrations survive SIGKILL at any point: the next normal start finishes the schema.

A child process runs the first ``initialize()`` on a fresh database and is killed for real
(SIGKILL, sent by itself from a statement hook) right after its N-th write statement, for every
N until the migration completes: every state a kill can leave behind is visited, on MariaDB (where DDL
is not transactional) and on SQLite. Then the database must never claim to be ready while it is
partial, and a normal ``initialize()`` must bring it to a schema equal to the models.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event

from memory import StoreUnavailable, load_config
from memory.store import SqlStore, create_store
from memory.store._models import Base, include_in_comparison

from .conftest import MYSQL_URL, mysql_admin, require_mysql

HEAD = "0005"
CHILD = r"""
import sys
from memory import load_config
from memory.store import create_store

store = create_store(load_config({"database": {"dsn": sys.argv[1]}}).database)
print("start", flush=True)
store.initialize()
"""


def store_for(dsn: str) -> SqlStore:
    return create_store(load_config({"database": {"dsn": dsn}}).database)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on one backend (all dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        if request.param == "sqlite":
            folder = tmp_path / uuid.uuid4().hex[:8]
            folder.mkdir()
            return f"sqlite:///{folder / 'memory.db'}"
        name = f"memtest_{uuid.uuid4().hex[:12]}"
        mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        made.append(name)
        return f"{MYSQL_URL}/{name}"

    if request.param == "mysql":
        require_mysql()
    yield make
    for name in made:
        mysql_admin(f"DROP DATABASE IF EXISTS {name}")


def child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    if not script.exists():
        script.write_text(CHILD, encoding="utf-8")
    return script


def schema_diff(store: SqlStore) -> list[object]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_in_comparison}), Base.metadata))


def check_recovery(dsn: str) -> None:
    store = store_for(dsn)
    try:
        state = store.schema_state()
        # Whatever the kill left, the database never claims to be ready while it is partial.
        if state.ready:
            assert schema_diff(store) == []
        else:
            assert store.current_revision() != HEAD or state.missing
        store.initialize()  # a normal start: must finish the schema, not fail on what exists
        assert store.current_revision() == HEAD
        assert store.schema_state().ready
        assert schema_diff(store) == []
        assert store.write_batch([("e1", 1.0, "s", "{}", None, None)], [("t1", "s", "e1", None, None, "running", 1.0)],
                                 [("t1", "ok", None, None, 2.0)]) == []
    finally:
        store.dispose()


WRITES = ("CREATE", "ALTER", "DROP", "RENAME", "INSERT", "UPDATE", "DELETE")


def initialize_killed_after_write(dsn: str, kill_at: int) -> tuple[int, int]:
    """Fork a child that runs the first ``initialize()`` and SIGKILLs itself right after its
    ``kill_at``-th write statement. Returns (wait status, writes done if it was not killed).

    A fork, not a fresh interpreter: the child starts in milliseconds, so every kill point can be
    visited in a few seconds. It builds its own store and engine; nothing of the parent's is used.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            store = store_for(dsn)
            writes = 0

            def after(conn: object, cursor: object, statement: str, *_: object) -> None:
                nonlocal writes
                if statement.lstrip().split(None, 1)[0].upper() in WRITES:
                    writes += 1
                    if writes == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)

            event.listen(store.engine, "after_cursor_execute", after)
            store.initialize()
            os.write(w, str(writes).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    reader = os.fdopen(r, "rb")
    try:
        deadline = time.monotonic() + 120  # a hung child fails the test instead of hanging it
        while True:
            done_pid, status = os.waitpid(pid, os.WNOHANG)
            if done_pid:
                break
            assert time.monotonic() < deadline, "the migrating child hung"
            time.sleep(0.005)
        done = reader.read().decode() or "-1"
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        reader.close()
    return status, int(done)


def test_sigkill_after_every_write_of_the_first_migration(fresh_db: Callable[[], str]) -> None:
    killed = 0
    for n in range(1, 100):
        dsn = fresh_db()
        status, writes = initialize_killed_after_write(dsn, n)
        if os.WIFEXITED(status):  # n is past the last write: the migration ran to its end
            assert os.WEXITSTATUS(status) == 0 and writes == n - 1 == killed
            check_recovery(dsn)
            break
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        killed += 1
        check_recovery(dsn)
    assert killed >= 8  # alembic_version, four tables, four indexes and the stamps: all visited


@pytest.mark.slow
def test_sigkill_at_swept_delays_into_the_first_initialize(fresh_db: Callable[[], str], tmp_path: Path) -> None:
    """Kills from outside at delays spread over a whole migration, landing also mid-statement."""

    def started(dsn: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(child(tmp_path)), dsn], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
        return proc

    # How long one first initialize() takes on this machine now (it varies with load): the sweep
    # then covers it from start to end, whatever the speed.
    probe = started(fresh_db())
    t0 = time.monotonic()
    assert probe.wait(60) == 0
    span = time.monotonic() - t0
    probe.stdout.close()  # type: ignore[union-attr]
    steps = 24
    for i in range(steps):
        dsn = fresh_db()
        proc = started(dsn)
        time.sleep(span * 1.1 * i / steps)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
        check_recovery(dsn)


def test_a_stamped_but_incomplete_schema_is_not_reported_ready(dsn: str) -> None:
    store = store_for(dsn)
    try:
        store.initialize()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE knowledge")
        state = store.schema_state()
        assert state.revision == HEAD and not state.ready and state.missing == ("table knowledge",)
        with pytest.raises(StoreUnavailable, match="missing table knowledge"):
            store.initialize()
    finally:
        store.dispose()


@pytest.mark.integration
def test_mysql_upgrade_waits_for_the_lock_and_never_migrates_without_it(mysql_dsn: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    store = store_for(mysql_dsn)
    url = make_url(MYSQL_URL)
    holder = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                             password=url.password or "", autocommit=True)
    try:
        with holder.cursor() as cur:  # another process is upgrading this database
            cur.execute("SELECT GET_LOCK(%s, 5)", (store.schema_lock_name,))  # type: ignore[attr-defined]
            assert cur.fetchone() == (1,)
        store.schema_lock_timeout = 0.5  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable, match="schema upgrade lock"):
            store.initialize()
        state = store.schema_state()  # it did not go ahead without the lock
        assert state.revision is None and len([m for m in state.missing if m.startswith("table ")]) == len(Base.metadata.tables)
        holder.cursor().execute("SELECT RELEASE_LOCK(%s)", (store.schema_lock_name,))  # type: ignore[attr-defined]
        store.initialize()
        assert store.schema_state().ready
    finally:
        holder.close()
        store.dispose()
