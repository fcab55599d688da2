"""The shared SQL middle layer: everything both dialects do the same way.

Dialect subclasses supply the engine options, the idempotent-insert statements (written for
the driver's ``executemany`` fast path), the schema lock and the mapping of driver errors to
:class:`~memory.StoreUnavailable` / :class:`~memory.StoreRejected`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from .._config import DatabaseConfig
from .._errors import StoreError, StoreRejected, StoreUnavailable
from ._base import Row, Store

log = logging.getLogger("memory.store")

MIGRATIONS = Path(__file__).parent / "migrations"
EVENT_COLS = "event_id, ts, session_key, obs, gate, meta"
TURN_COLS = ("turn_id, session_key, input_event_id, plan, meta, status, error, final_output_obs_id, "
             "started_at, finished_at")
_TABLES = {"events": "event_id", "turns": "turn_id", "configs": "key", "knowledge": "key"}


def alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


class SqlStore(Store):
    """SQLAlchemy Core implementation of :class:`Store`; dialects override the hooks below."""

    param = "?"
    insert_event_sql = ""
    insert_turn_sql = ""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.engine: Engine = self._create_engine(config)

    # -- dialect hooks -------------------------------------------------------------------------
    def _create_engine(self, config: DatabaseConfig) -> Engine:
        raise NotImplementedError

    def classify(self, exc: BaseException) -> StoreError:
        """Map a driver error to the most specific StoreError."""
        raise NotImplementedError

    @contextlib.contextmanager
    def schema_lock(self, conn: Connection) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _begin_raw(self, cursor: Any) -> None:
        """Start a write transaction on a raw DBAPI cursor (dialects that need a statement)."""

    @contextlib.contextmanager
    def _raw_write(self) -> Iterator[Any]:
        """A pooled DBAPI cursor in one write transaction.

        The write path talks to the driver directly (``executemany`` on the pooled connection):
        SQLAlchemy's per-statement bookkeeping would otherwise cost a visible share of the drain
        rate, and every row is already serialized. The pool, pre-ping and dispose stay SQLAlchemy's.
        """
        conn = self.engine.raw_connection()
        cur = None
        try:
            cur = conn.cursor()
            self._begin_raw(cur)
            yield cur
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.invalidate()  # never hand a connection in an unknown state back to the pool
            raise
        finally:
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()
            with contextlib.suppress(Exception):
                conn.close()

    # -- errors ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped at this boundary
            mapped = self.classify(exc)
            if mapped.transient:
                with contextlib.suppress(Exception):
                    self.engine.dispose()  # drop connections that may be dead (server restarted)
            raise mapped from exc

    @staticmethod
    def _message(exc: BaseException) -> str:
        orig = getattr(exc, "orig", None)
        base = orig if orig is not None else exc
        return f"{type(base).__name__}: {base}"[:500]

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self._message(exc))

    def _rejected(self, exc: BaseException) -> StoreRejected:
        return StoreRejected(self._message(exc))

    def _generic(self, exc: BaseException) -> StoreError:
        if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                            sa_exc.TimeoutError, ConnectionError, TimeoutError, OSError)):
            return self._unavailable(exc)
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return self._unavailable(exc)
        return self._rejected(exc)

    # -- schema ----------------------------------------------------------------------------------
    def initialize(self) -> None:
        with self._errors(), self.engine.connect() as conn:
            with self.schema_lock(conn):
                command.upgrade(alembic_config(conn), "head")
                conn.commit()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self._errors(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- writes ----------------------------------------------------------------------------------
    def write_batch(self, events: Sequence[Row], turns: Sequence[Row], finishes: Sequence[Row]) -> list[int]:
        p = self.param
        with self._errors(), self._raw_write() as cur:
            if events:
                cur.executemany(self.insert_event_sql, events)
            if turns:
                cur.executemany(self.insert_turn_sql, turns)
            if not finishes:
                return []
            params = [(f[1], f[2], f[3], f[4], f[0]) for f in finishes]
            cur.executemany(f"UPDATE turns SET status={p}, error={p}, final_output_obs_id={p}, finished_at={p} "
                            f"WHERE turn_id={p}", params)
            if cur.rowcount == len(finishes):
                return []
            ids = list(dict.fromkeys(f[0] for f in finishes))
            cur.execute(f"SELECT turn_id FROM turns WHERE turn_id IN ({', '.join([p] * len(ids))})", ids)
            present = {r[0] for r in cur.fetchall()}
            return [i for i, f in enumerate(finishes) if f[0] not in present]

    # -- reads -----------------------------------------------------------------------------------
    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        with self._errors(), self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql, params).fetchall()]

    def get_event(self, event_id: str) -> Row | None:
        rows = self._fetch(f"SELECT {EVENT_COLS} FROM events WHERE event_id={self.param}", (event_id,))
        return rows[0] if rows else None

    def recent_events(self, session_key: str, limit: int) -> list[Row]:
        return self._fetch(f"SELECT {EVENT_COLS} FROM events WHERE session_key={self.param} "
                           f"ORDER BY event_id DESC LIMIT {int(limit)}", (session_key,))

    def get_turn(self, turn_id: str) -> Row | None:
        rows = self._fetch(f"SELECT {TURN_COLS} FROM turns WHERE turn_id={self.param}", (turn_id,))
        return rows[0] if rows else None

    def recent_turns(self, session_key: str, limit: int) -> list[Row]:
        return self._fetch(f"SELECT {TURN_COLS} FROM turns WHERE session_key={self.param} "
                           f"ORDER BY turn_id DESC LIMIT {int(limit)}", (session_key,))

    def _existing(self, conn: Connection, table: str, ids: Sequence[str]) -> set[str]:
        column = _TABLES[table]
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            marks = ", ".join([self.param] * len(chunk))
            rows = conn.exec_driver_sql(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", tuple(chunk))
            found.update(r[0] for r in rows)
        return found

    def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        with self._errors(), self.engine.connect() as conn:
            return self._existing(conn, table, ids)

    def count(self, table: str) -> int:
        if table not in _TABLES:
            raise ValueError(f"unknown table {table!r}")
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())

    def execute(self, sql: str, params: Sequence[Any] | Sequence[Sequence[Any]] = ()) -> list[Row]:
        """Run one driver-level statement in its own transaction (used by the vault sync)."""
        with self._errors(), self._write() as conn:
            if not params and self.param == "%s":
                sql = sql.replace("%", "%%")  # pyformat drivers format even without parameters
            result = conn.exec_driver_sql(sql, params) if params else conn.exec_driver_sql(sql)
            return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    # -- the vault's synced copy ------------------------------------------------------------------
    NOTE_COLS = {
        "configs": ("key", "path", "title", "content", "metadata_json", "digest", "mtime_ns", "updated_at"),
        "knowledge": ("key", "category", "path", "title", "content", "tags", "headings", "links", "metadata_json",
                      "digest", "mtime_ns", "updated_at"),
    }

    def upsert_sql(self, table: str) -> str:
        raise NotImplementedError

    def upsert_notes(self, table: str, rows: Sequence[Row]) -> None:
        """Insert or replace vault rows (``NOTE_COLS[table]`` order), all in one transaction."""
        if not rows:
            return
        with self._errors(), self._raw_write() as cur:
            cur.executemany(self.upsert_sql(table), list(rows))

    def delete_notes(self, table: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._errors(), self._raw_write() as cur:
            cur.executemany(f"DELETE FROM {table} WHERE {self.quote('key')}={self.param}", [(k,) for k in keys])

    def note_digests(self, table: str) -> dict[str, tuple[str, str]]:
        """key -> (digest, path) of every row: what the database believes the vault holds."""
        rows = self._fetch(f"SELECT {self.quote('key')}, digest, path FROM {table}", ())
        return {r[0]: (r[1], r[2]) for r in rows}

    def get_note(self, table: str, key: str) -> dict[str, Any] | None:
        cols = self.NOTE_COLS[table]
        rows = self._fetch(f"SELECT {', '.join(self.quote(c) for c in cols)} FROM {table} "
                           f"WHERE {self.quote('key')}={self.param}", (key,))
        return dict(zip(cols, rows[0])) if rows else None

    def search_knowledge(self, words: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """Notes whose title, tags or content contain every word (case-insensitive)."""
        cols = self.NOTE_COLS["knowledge"]
        where = " AND ".join(
            f"(LOWER(title) LIKE {self.param} OR LOWER(content) LIKE {self.param} OR LOWER(tags) LIKE {self.param})"
            for _ in words) or "1=1"
        params: list[str] = []
        for w in words:
            like = f"%{w.lower()}%"
            params += [like, like, like]
        rows = self._fetch(f"SELECT {', '.join(self.quote(c) for c in cols)} FROM knowledge WHERE {where} "
                           f"ORDER BY {self.quote('key')} LIMIT {int(limit) * 5}", tuple(params))
        return [dict(zip(cols, r)) for r in rows]

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - ping answers yes or no, never raises
            return False

    def dispose(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.dispose()
        # A DBAPI connection dropped without close() (sqlite3 keeps a self-referencing statement
        # cache) holds its file handles until the cyclic GC runs; dispose means "let go now".
        gc.collect()
