"""MySQL / MariaDB through PyMySQL.

* ``utf8mb4`` on the connection and every table (set in the config loader and the schema).
* Idempotent inserts use ``ON DUPLICATE KEY UPDATE pk=pk``, not ``INSERT IGNORE``: IGNORE also
  downgrades real errors (data too long, bad value) to warnings and silently truncates, which
  would hide exactly the rows the dead-letter file exists for. The statement keeps PyMySQL's
  ``executemany`` fast path (one multi-row INSERT per ~1 MB).
* ``READ COMMITTED`` avoids gap locks between processes inserting into the same tables.
* Connect/read/write timeouts come from the config, so a blackholed server costs a bounded wait
  (and only the writer thread ever pays it).
* A chunk of finishes is one statement: an UPDATE joined to a derived table of the chunk's rows
  (``SELECT ... UNION ALL SELECT ...``). PyMySQL's ``executemany`` only batches INSERT; for an
  UPDATE it runs one statement, one round trip, per row. The derived rows join on the primary
  key (an ``eq_ref`` lookup per row), and the comparison takes the column's ``utf8mb4_bin``
  collation, so ids match exactly as with ``WHERE turn_id=%s``.
* Driver error numbers are mapped to transient or permanent at this boundary.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine

from .._config import DatabaseConfig
from .._errors import StoreError, StoreUnavailable
from ._base import Row
from ._sql import EVENT_COLS, FINISH_WINS, POOL_LOGGING_NAME, SqlStore

# Retrying can help: connection trouble, timeouts, lock waits, deadlocks, read-only, full, restarting.
TRANSIENT_CODES = {
    1021, 1037, 1040, 1041, 1045, 1049, 1053, 1114, 1146, 1205, 1213, 1290, 1317, 1792, 1836, 1927,
    2002, 2003, 2005, 2006, 2013, 2014, 2026, 2055, 4031, 1030,
}
# The row itself is unacceptable: too long, bad value, out of range, NULL, constraint.
PERMANENT_CODES = {1048, 1062, 1153, 1264, 1292, 1366, 1367, 1406, 1411, 1452, 3140, 4025, 1265, 1301}


class MysqlStore(SqlStore):
    dialect = "mysql"
    param = "%s"
    insert_event_sql = (f"INSERT INTO events ({EVENT_COLS}) VALUES (%s,%s,%s,%s,%s,%s) "
                        "ON DUPLICATE KEY UPDATE event_id=event_id")
    insert_turn_sql = ("INSERT INTO turns (turn_id, session_key, input_event_id, plan, meta, status, started_at) "
                       "VALUES (%s,%s,%s,%s,%s,%s,%s) ON DUPLICATE KEY UPDATE turn_id=turn_id")

    def _create_engine(self, config: DatabaseConfig) -> Engine:
        return create_engine(
            config.url,
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_pre_ping=True,
            pool_recycle=config.pool_recycle,
            pool_logging_name=POOL_LOGGING_NAME,
            pool_timeout=config.connect_timeout,
            isolation_level="READ COMMITTED",
            connect_args={
                "connect_timeout": config.connect_timeout,
                "read_timeout": config.read_timeout,
                "write_timeout": config.write_timeout,
            },
        )

    def quote(self, name: str) -> str:
        return f"`{name}`"

    def _apply_finishes(self, cur: Any, rows: Sequence[Row]) -> int:
        # The client flag FOUND_ROWS (set by SQLAlchemy's PyMySQL dialect) makes rowcount the
        # number of rows *matched*, so re-applying an identical finish still counts as present.
        first = "SELECT %s AS turn_id, %s AS status, %s AS error, %s AS final_output_obs_id, %s AS finished_at"
        derived = " UNION ALL ".join([first] + ["SELECT %s, %s, %s, %s, %s"] * (len(rows) - 1))
        sql = (f"UPDATE turns AS t JOIN ({derived}) AS f ON t.turn_id = f.turn_id "
               "SET t.status = f.status, t.error = f.error, t.final_output_obs_id = f.final_output_obs_id, "
               "t.finished_at = f.finished_at "
               f"WHERE {FINISH_WINS.format(stored='t.finished_at', new='f.finished_at')}")
        cur.execute(sql, [v for f in rows for v in (f[0], f[1], f[2], f[3], f[4])])
        return int(cur.rowcount)

    def upsert_sql(self, table: str) -> str:
        cols = self.NOTE_COLS[table]
        names = ", ".join(f"`{c}`" for c in cols)
        updates = ", ".join(f"`{c}`=VALUES(`{c}`)" for c in cols[1:])
        return (f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(cols))}) "
                f"ON DUPLICATE KEY UPDATE {updates}")

    def outbox_upsert_sql(self) -> str:
        return ("INSERT INTO recall_outbox (kind, item_id, gen, queued_at) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE gen = gen + 1, queued_at = VALUES(queued_at)")

    def keyword_sql(self, where: str, limit: int) -> tuple[str, int]:
        return ("SELECT i.kind, i.item_id, i.ts, MATCH(i.terms) AGAINST(%s IN BOOLEAN MODE) AS rel FROM recall_items i "
                f"WHERE MATCH(i.terms) AGAINST(%s IN BOOLEAN MODE){where} ORDER BY rel DESC, i.kind, i.item_id "
                f"LIMIT {limit}", 2)

    def _dialect_missing(self, conn: Connection) -> tuple[str, ...]:
        rows = conn.exec_driver_sql("SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
                                    "AND table_name = 'recall_items' AND index_name = 'ft_recall_terms' LIMIT 1")
        return () if rows.first() else ("index recall_items.ft_recall_terms",)

    schema_lock_timeout = 120.0  # seconds to wait for another process's upgrade to finish

    @property
    def schema_lock_name(self) -> str:
        # Per database: upgrades of different databases on one server need not wait for each
        # other. Hashed, because a lock name is limited to 64 characters and a database name is
        # up to 64 itself.
        db = self.config.url.database or ""
        return "memory_schema:" + hashlib.sha1(db.encode("utf-8")).hexdigest()

    @contextlib.contextmanager
    def schema_lock(self, conn: Connection) -> Iterator[None]:
        # Serializes concurrent upgrades across processes; the second one then finds head. The
        # server releases the lock when its holder's connection dies, so a killed upgrade never
        # leaves it behind.
        name = self.schema_lock_name
        got = conn.exec_driver_sql("SELECT GET_LOCK(%s, %s)", (name, self.schema_lock_timeout)).scalar()
        conn.commit()
        if got != 1:
            # 0: timed out; NULL: error. Migrating without the lock could race another process's
            # check-then-create steps, so this is "not ready yet", retried like any outage.
            raise StoreUnavailable(f"schema upgrade lock not acquired within {self.schema_lock_timeout:g}s "
                                   "(another process is upgrading this database)")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (name,))
                conn.commit()

    def classify(self, exc: BaseException) -> StoreError:
        orig = getattr(exc, "orig", exc)
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code in TRANSIENT_CODES:
            err = self._unavailable(exc)
            err.row_suspect = code in (2006, 2013, 1153)
            return err
        if code in PERMANENT_CODES:
            return self._rejected(exc)
        if isinstance(orig, (UnicodeError, TypeError, ValueError, OverflowError)):
            return self._rejected(exc)
        return self._generic(exc)
