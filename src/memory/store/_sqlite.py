"""SQLite: WAL, a busy timeout, ``BEGIN IMMEDIATE`` for writes, and a watch on the file itself.

Why each setting:

* ``journal_mode=WAL`` lets readers run while one process writes; ``synchronous=NORMAL`` is
  durable across process crashes in WAL mode and loses at most the last transactions on power
  loss (the journal in front of it covers that window with its own fsync policy).
* ``busy_timeout`` makes a process wait for another's write lock instead of failing at once.
* Write transactions start with ``BEGIN IMMEDIATE``: taking the write lock up front means a
  transaction never has to upgrade a read lock, the case where SQLite returns "database is
  locked" without waiting. Several processes can therefore share one file safely.
* The file's inode is checked before each write batch. If the file was deleted or replaced
  underneath, pooled connections would keep writing into the unlinked inode and those rows
  would silently vanish; instead the pool is dropped and the batch fails as transient, so it is
  retried against the new file once the schema is recreated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from .._config import DatabaseConfig
from .._errors import StoreError, StoreUnavailable
from ._sql import EVENT_COLS, POOL_LOGGING_NAME, SqlStore

log = logging.getLogger("memory.store")
SCHEMA_LOCK_WAIT_S = 120.0  # like MySQL's GET_LOCK wait: a stuck upgrader never blocks forever

_TRANSIENT = ("locked", "readonly", "read-only", "unable to open", "disk i/o", "disk is full", "no such table",
              "busy", "not a database", "interrupted", "closed")


FORK_WAIT_S = 2.0  # how long a fork waits for SQLite calls in progress to finish

# SQLite's lock bookkeeping is per process, so whether it survived a fork intact is a fact about
# the process, not about one store object: stores built in a child after an unsafe fork refuse.
_inherited_busy: str | None = None


def _open_files(path: str) -> list[str]:
    """The database's files (``path``, ``-wal``, ``-shm``, ``-journal``) this process has open.

    Read from ``/proc/self/fd``; where that does not exist the answer is "none" (not checkable).
    """
    names = {path, path + "-wal", path + "-shm", path + "-journal"}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target in names:
                found.append(target)
    return found


class _ForkCheck:
    """Before a forked child's first connection to a file: is any of the parent's SQLite state left?

    The fork hooks close every connection they know of, but SQLite keeps a connection that was
    closed while one of its statements was alive open until the statement is freed (a cursor
    kept by a traceback, or by a thread that does not exist in the child). A new connection
    would then share the inherited per-file state and hold none of the kernel locks SQLite
    believes it holds: once the parent exits, another process may reset the WAL index under it
    (lost commits, or SIGBUS). So the first connection per file after a fork checks the files
    this process has open (after all hooks ran, so every store has let go of its own); garbage
    is collected once; state that survives that cannot be released, and the file is refused.
    """

    def __init__(self, forked: bool) -> None:
        self.forked = forked
        self._lock = threading.RLock()  # a finalizer run by gc.collect() below may connect too
        self._checked: set[str] = set()
        self._refused: dict[str, str] = {}

    def refusal(self, path: Path | None) -> str | None:
        if not self.forked or path is None:
            return None
        key = os.path.realpath(path)
        with self._lock:  # held across the check: a sibling's first connection must not count
            if key in self._refused:
                return self._refused[key]
            if key in self._checked:
                return None
            if _open_files(key):
                gc.collect()  # a cycle holding a statement (an exception kept with its traceback)
            left = _open_files(key)
            if left:
                msg = (f"SQLite state for {path} inherited from the parent process (forked) is still open and "
                       "cannot be released here; SQLite is not used in this process, records wait in the "
                       "journal for the next process")
                log.warning("memory: %s", msg)
                self._refused[key] = msg
                return msg
            self._checked.add(key)
            return None


_fork_check = _ForkCheck(forked=False)


def _after_fork_in_child() -> None:
    global _fork_check
    _fork_check = _ForkCheck(forked=True)


os.register_at_fork(after_in_child=_after_fork_in_child)


class _ForkGate:
    """Counts threads inside SQLite, so a fork can wait for a moment when there are none."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._forking = False
        self.idle_at_fork = True

    def enter(self) -> None:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._busy += 1

    def leave(self) -> None:
        with self._cond:
            self._busy = max(0, self._busy - 1)
            if self._busy == 0:
                self._cond.notify_all()

    @contextlib.contextmanager
    def op(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def before_fork(self, timeout: float) -> None:
        with self._cond:
            self._forking = True  # no new call starts until the fork is done
            self.idle_at_fork = self._cond.wait_for(lambda: self._busy == 0, timeout)

    def after_fork(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()


class SqliteStore(SqlStore):
    dialect = "sqlite"
    param = "?"
    insert_event_sql = f"INSERT INTO events ({EVENT_COLS}) VALUES (?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING"
    insert_turn_sql = ("INSERT INTO turns (turn_id, session_key, input_event_id, plan, meta, status, started_at) "
                       "VALUES (?,?,?,?,?,?,?) ON CONFLICT(turn_id) DO NOTHING")

    def _create_engine(self, config: DatabaseConfig) -> Engine:
        url = config.url
        self.path: Path | None = None
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            self.path = Path(url.database)
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
        self._inode: int | None = None
        busy_ms = int(config.sqlite_busy_timeout * 1000)
        engine = create_engine(url, connect_args={"timeout": config.sqlite_busy_timeout, "check_same_thread": False},
                               pool_size=config.pool_size, max_overflow=config.max_overflow,
                               pool_logging_name=POOL_LOGGING_NAME)

        self._connections: dict[int, sqlite3.Connection] = {}  # open DBAPI connections (for fork)
        connections = self._connections
        gate = self._gate = _ForkGate()

        @event.listens_for(engine, "do_connect")
        def _do_connect(dialect: Any, _rec: object, cargs: Any, cparams: Any) -> sqlite3.Connection:
            if _inherited_busy is not None:
                raise sqlite3.OperationalError(_inherited_busy)
            refused = _fork_check.refusal(self.path)
            if refused is not None:
                raise sqlite3.OperationalError(refused)
            with gate.op():  # connecting and set-up run inside SQLite: a fork must not cut them
                dbapi_conn: sqlite3.Connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
                dbapi_conn.isolation_level = None  # transactions are begun explicitly below
                cur = dbapi_conn.cursor()
                try:
                    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                finally:
                    cur.close()
                return dbapi_conn

        @event.listens_for(engine, "checkout")
        def _on_checkout(*_: object) -> None:
            gate.enter()

        @event.listens_for(engine, "checkin")
        def _on_checkin(*_: object) -> None:
            gate.leave()

        @event.listens_for(engine, "close")
        @event.listens_for(engine, "close_detached")
        def _on_close(dbapi_conn: sqlite3.Connection, *_: object) -> None:
            connections.pop(id(dbapi_conn), None)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            connections[id(dbapi_conn)] = dbapi_conn

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("sqlite_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _check_file(self) -> None:
        if self.path is None:
            return
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._inode is not None and inode != self._inode:
            self._drop_pool()
            self._inode = inode
            raise StoreUnavailable(f"SQLite file {self.path} was deleted or replaced; reopening")
        self._inode = inode

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_file()
        with self.engine.connect().execution_options(sqlite_write=True) as conn, conn.begin():
            yield conn

    def upsert_sql(self, table: str) -> str:
        cols = self.NOTE_COLS[table]
        names = ", ".join(f'"{c}"' for c in cols)
        updates = ", ".join(f'"{c}"=excluded."{c}"' for c in cols[1:])
        return (f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))}) "
                f'ON CONFLICT("key") DO UPDATE SET {updates}')

    def outbox_upsert_sql(self) -> str:
        return ("INSERT INTO recall_outbox (kind, item_id, gen, queued_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(kind, item_id) DO UPDATE SET gen = gen + 1, queued_at = excluded.queued_at")

    def keyword_sql(self, where: str, limit: int) -> tuple[str, int]:
        return ("SELECT i.kind, i.item_id, i.ts FROM recall_fts JOIN recall_items i ON i.doc_id = recall_fts.rowid "
                f"WHERE recall_fts MATCH ?{where} ORDER BY recall_fts.rank, i.kind, i.item_id LIMIT {limit}", 1)

    def _dialect_missing(self, conn: Connection) -> tuple[str, ...]:
        names = {r[0] for r in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE name IN ('recall_fts', 'recall_items_ai', 'recall_items_ad')")}
        return tuple(f"{what} {n}" for what, n in (("table", "recall_fts"), ("trigger", "recall_items_ai"),
                                                    ("trigger", "recall_items_ad")) if n not in names)

    def _begin_raw(self, cursor: Any) -> None:
        self._check_file()
        cursor.execute("BEGIN IMMEDIATE")

    def initialize(self) -> None:
        super().initialize()
        if self.path is not None:
            with contextlib.suppress(OSError):
                self._inode = os.stat(self.path).st_ino

    @contextlib.contextmanager
    def schema_lock(self, conn: Connection) -> Iterator[None]:
        if self.path is None:
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".migrate-lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + SCHEMA_LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        # No locks on this file system (NFS without a lock daemon, some FUSE):
                        # every migration step is idempotent, so upgrading unserialized is safe.
                        log.warning("cannot lock %s (%s); upgrading the schema without the lock", lock_path, exc)
                        break
                    if time.monotonic() >= deadline:
                        raise StoreUnavailable(f"another process has held {lock_path.name} for "
                                               f"{SCHEMA_LOCK_WAIT_S:.0f}s; schema upgrade will be retried") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def before_fork(self) -> None:
        """Let no connection be in use at the moment of a fork (waits briefly for those that are)."""
        self._gate.before_fork(FORK_WAIT_S)

    def after_fork_in_parent(self) -> None:
        self._gate.after_fork()

    def after_fork_in_child(self) -> None:
        """Close every connection inherited from the parent (in a forked child).

        SQLite keeps per-process lock bookkeeping per file. A child inherits the parent's, so
        while the inherited connections stay open its *new* connections believe they already
        hold locks the kernel never gave the child; once the parent dies another process may
        reset the WAL under them (commits lost, or SIGBUS on the shared memory). Closing them
        clears that state (unless a statement keeps a closed one open: :class:`_ForkCheck`
        verifies before the first new connection); it changes nothing for the parent, whose
        locks are its own.

        Closing is only safe if no thread was inside SQLite at the fork (its mutex would be held
        forever). The fork gate makes that the rule; if a call outlasted the wait, this process
        cannot use SQLite safely at all: its records stay in its journal (durable), health says
        why, and the next process to start on the folder writes them.
        """
        global _inherited_busy
        idle = self._gate.idle_at_fork
        self._gate = _ForkGate()
        if not idle:
            _inherited_busy = ("a SQLite call was in progress when this process was forked; SQLite cannot be "
                               "used safely here, records wait in the journal for the next process")
            return
        conns = list(self._connections.values())
        self._connections.clear()

        def close_all() -> None:
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()

        # Backstop: if closing blocks anyway (SQLite state a vanished thread left locked), give up
        # on SQLite in this process instead of hanging the child.
        closer = threading.Thread(target=close_all, name="memory-fork-close", daemon=True)
        closer.start()
        closer.join(FORK_WAIT_S)
        if closer.is_alive():
            _inherited_busy = ("SQLite state inherited from the parent is locked; SQLite cannot be used safely "
                               "in this process, records wait in the journal for the next process")
            return
        super().after_fork_in_child()

    def _drop_pool(self) -> None:
        with self._gate.op():  # closing connections runs inside SQLite too
            self.engine.dispose()

    def classify(self, exc: BaseException) -> StoreError:
        orig = getattr(exc, "orig", exc)
        if isinstance(orig, sqlite3.OperationalError):
            return self._unavailable(exc)
        if isinstance(orig, OSError) and orig.errno in (errno.ENOENT, errno.EACCES, errno.EROFS, errno.ENOSPC):
            return self._unavailable(exc)
        if isinstance(orig, sqlite3.DatabaseError) and any(m in str(orig).lower() for m in _TRANSIENT):
            return self._unavailable(exc)
        if isinstance(orig, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                             sqlite3.InterfaceError, OverflowError, ValueError, TypeError)):
            return self._rejected(exc)
        return self._generic(exc)
