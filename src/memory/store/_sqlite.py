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
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from .._config import DatabaseConfig
from .._errors import StoreError, StoreUnavailable
from ._sql import EVENT_COLS, SqlStore

_TRANSIENT = ("locked", "readonly", "read-only", "unable to open", "disk i/o", "disk is full", "no such table",
              "busy", "not a database", "interrupted", "closed")


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
                               pool_size=config.pool_size, max_overflow=config.max_overflow)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly below
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={busy_ms}")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            finally:
                cur.close()

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
            self.engine.dispose()
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
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

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
