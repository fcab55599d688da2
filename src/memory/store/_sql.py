"""The shared SQL middle layer: everything both dialects do the same way.

Dialect subclasses supply the engine options, the idempotent-insert statements (written for
the driver's ``executemany`` fast path), the schema lock and the mapping of driver errors to
:class:`~memory.StoreUnavailable` / :class:`~memory.StoreRejected`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy import exc as sa_exc

from .._config import DatabaseConfig, redact
from .._errors import StoreError, StoreRejected, StoreUnavailable, exception_chain
from ._base import Row, Store
from ._models import is_dialect_object
from ._notes import NoteSql
from ._decay import DecaySql
from ._graph import Forgotten, GraphSql, batch_ids
from ._recall import KIND_EVENT, RecallSql

log = logging.getLogger("memory.store")

MIGRATIONS = Path(__file__).parent / "migrations"
EVENT_COLS = "event_id, ts, session_key, obs, gate, meta"
TURN_COLS = ("turn_id, session_key, input_event_id, plan, meta, status, error, final_output_obs_id, "
             "started_at, finished_at")
_TABLES = {"events": "event_id", "turns": "turn_id", "configs": "key", "knowledge": "key", "recall_items": "doc_id",
           "recall_outbox": "item_id"}

# The one rule for applying a finish, shared by every dialect and every statement shape: it
# lands only if no finish is stored yet or the stored one is not newer. The order in which the
# writer happens to retry finishes (backoff, jitter, restarts, other processes) then cannot
# matter: the database keeps the latest by ``finished_at``, and re-applying a finish is a no-op.
FINISH_WINS = "({stored} IS NULL OR {stored} <= {new})"
FINISH_CHUNK_BYTES = 1_000_000  # one statement's parameters stay far below max_allowed_packet


def latest_finishes(finishes: Sequence[Row]) -> list[Row]:
    """One finish per turn: the greatest ``finished_at``; on a tie the one that came later.

    A batch may hold several finishes of one turn; a multi-row UPDATE would apply an arbitrary
    one of them, so the batch is reduced to its winners first (in first-seen turn order).
    """
    latest: dict[str, Row] = {}
    for f in finishes:
        held = latest.get(f[0])
        if held is None or not _earlier(f[4], held[4]):
            latest[f[0]] = f
    return list(latest.values())


def _earlier(a: Any, b: Any) -> bool:
    """``a < b`` where a missing time counts as the oldest (as ``IS NULL`` does in FINISH_WINS)."""
    if a is None or b is None:
        return a is None and b is not None
    return bool(a < b)


def finish_chunks(rows: Sequence[Row], max_rows: int, max_bytes: int = FINISH_CHUNK_BYTES) -> list[list[Row]]:
    """Split rows into statements of at most ``max_rows`` rows and about ``max_bytes`` of text.

    A single row larger than ``max_bytes`` still gets a chunk of its own (the database decides).
    """
    chunks: list[list[Row]] = []
    chunk: list[Row] = []
    size = 0
    for row in rows:
        n = 64 + sum(len(v) for v in row if isinstance(v, str))
        if chunk and (len(chunk) >= max_rows or size + n > max_bytes):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(row)
        size += n
    if chunk:
        chunks.append(chunk)
    return chunks


class _ResetFailure(logging.Filter):
    """SQLAlchemy logs a full traceback at ERROR when a pooled connection's reset-on-return fails
    (the server or network dropped it after its last query). The pool discards that connection
    and nothing is lost, and during an outage it happens on every return: one warning line each,
    without the traceback, says enough (a core's stderr is not ours to flood)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Exception during reset"):
            exc = record.exc_info[1] if record.exc_info else None
            record.msg, record.args = "pooled connection dropped at return (%s); discarded", (exc,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


_RESET_FILTER = _ResetFailure()
#: Our pools log under ``sqlalchemy.pool.impl.<Pool>.memory``: the filter below touches only them.
POOL_LOGGING_NAME = "memory"


def quiet_pool_resets(engine: Engine) -> None:
    """Install ``_ResetFailure`` on the logger of this engine's pool (only ours, not the root's)."""
    logger = getattr(engine.pool, "logger", None)
    logger = getattr(logger, "logger", logger)  # SQLAlchemy's InstanceLogger wraps a Logger
    if isinstance(logger, logging.Logger) and _RESET_FILTER not in logger.filters:
        logger.addFilter(_RESET_FILTER)


def alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@dataclasses.dataclass(frozen=True)
class SchemaState:
    """The schema as found: ``ready`` only when stamped at head *and* nothing of head is missing."""

    revision: str | None
    head: str
    missing: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.revision == self.head and not self.missing

    def describe(self) -> str:
        stamp = self.revision or "no revision stamp"
        lacking = f"; missing {', '.join(self.missing)}" if self.missing else ""
        return f"at {stamp}, head is {self.head}{lacking}"


def expected_schema() -> dict[str, tuple[set[str], set[str]]]:
    """table -> (column names, index names) of the models at head."""
    from ._models import Base

    return {name: ({c.name for c in t.columns}, {str(ix.name) for ix in t.indexes})
            for name, t in Base.metadata.tables.items()}


def assess_schema(revision: str | None, head: str, expected: Mapping[str, tuple[set[str], set[str]]],
                  present: Mapping[str, tuple[set[str], set[str]]]) -> SchemaState:
    """Compare what a database holds with what head needs (tables, columns, indexes by name).

    Types are not compared here (the test suite compares the models with the migrations); this
    is the cheap check that a schema left half-built is never taken for a finished one.
    """
    missing: list[str] = []
    for table, (columns, indexes) in sorted(expected.items()):
        if table not in present:
            missing.append(f"table {table}")
            continue
        have_cols, have_ix = present[table]
        missing += [f"column {table}.{c}" for c in sorted(columns - have_cols)]
        missing += [f"index {table}.{i}" for i in sorted(indexes - have_ix)]
    return SchemaState(revision, head, tuple(missing))


class SqlStore(NoteSql, RecallSql, GraphSql, DecaySql, Store):
    """SQLAlchemy Core implementation of :class:`Store`; dialects override the hooks below."""

    param = "?"
    insert_event_sql = ""
    insert_turn_sql = ""
    finish_chunk_rows = 500  # finishes per statement (network dialects: one round trip each)

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._init_lock = threading.Lock()
        self._head_revision: str | None = None
        self.engine: Engine = self._create_engine(config)
        quiet_pool_resets(self.engine)

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
            # The cursor goes first: SQLite keeps a connection closed under a live statement open
            # (files, locks, shared memory) until that statement is freed, and this exception's
            # traceback keeps the cursor alive for as long as anyone keeps the exception.
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()
                cur = None
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

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction for a plug-in's own steps (decay's batches): a DBAPI cursor whose
        statements commit together when the block ends and roll back if the block raises. An
        exception leaves as :class:`~memory.StoreError` (the block is store work: a driver's
        ``ValueError`` for a bad parameter is one too); a ``BaseException`` that is not an
        ``Exception`` (one that ends a dry run, say) passes unchanged, after the rollback."""
        with self._errors(), self._raw_write() as cur:
            yield cur

    # -- errors ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped at this boundary
            self._scrub_chain(exc)
            mapped = self.classify(exc)
            if mapped.transient:
                with contextlib.suppress(Exception):
                    self._drop_pool()  # drop connections that may be dead (server restarted)
            raise mapped from exc

    def _message(self, exc: BaseException) -> str:
        """The driver's error as one line for StoreError, logs and health, with every secret of
        the DSN scrubbed out (before truncating, so no partial secret survives either)."""
        orig = getattr(exc, "orig", None)
        base = orig if orig is not None else exc
        return redact(f"{type(base).__name__}: {base}", self.config.secrets)[:500]

    def _scrub_chain(self, exc: BaseException) -> None:
        """Remove the DSN's secrets from the driver's exceptions themselves.

        The StoreError keeps its cause (``raise ... from``) for debugging, and a logged traceback
        prints the whole chain; so the chain's own text must be clean too, not just our message.
        """
        secrets = self.config.secrets
        if not secrets:
            return
        for e in exception_chain(exc):
            with contextlib.suppress(Exception):
                if any(secret in str(e) for secret in secrets):
                    e.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in e.args)

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
        """Bring the schema to head, then make sure it *is* head before saying so.

        Migrations are restartable (the rule in ``memory.store.migrations``), so a start after a
        kill in the middle of one simply finishes it. The check afterwards means a schema that is
        stamped but incomplete (a table dropped by hand, a half-restored dump) is reported as not
        ready, never as ready: the writer keeps the records journaled and tries again.
        """
        # One upgrade at a time within the process too (the writer and the vault's first sync
        # both ask); the schema lock serializes processes, and may be unavailable (no flock).
        with self._init_lock, self._errors(), self.engine.connect() as conn:
            with self.schema_lock(conn):
                command.upgrade(alembic_config(conn), "head")
                conn.commit()
                state = self._schema_state(conn)
                conn.rollback()  # end the reflection's read transaction before the lock is released
        if not state.ready:
            raise StoreUnavailable(f"schema not ready after upgrade: {state.describe()}")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self._errors(), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def schema_state(self) -> SchemaState:
        """Where the schema is: the stamped revision, head, and anything of head that is missing."""
        with self._errors(), self.engine.connect() as conn:
            return self._schema_state(conn)

    def _schema_state(self, conn: Connection) -> SchemaState:
        from alembic.runtime.migration import MigrationContext

        revision = MigrationContext.configure(conn).get_current_revision()
        insp = inspect(conn)
        present: dict[str, tuple[set[str], set[str]]] = {}
        for table in insp.get_table_names():
            if is_dialect_object(table):
                continue
            present[table] = ({c["name"] for c in insp.get_columns(table)},
                              {str(ix["name"]) for ix in insp.get_indexes(table)})
        state = assess_schema(revision, self._head(), expected_schema(), present)
        if revision == state.head:  # before head these objects are not expected yet
            state = dataclasses.replace(state, missing=state.missing + self._dialect_missing(conn))
        return state

    def _dialect_missing(self, conn: Connection) -> tuple[str, ...]:
        """Objects of head outside the models (see ``DIALECT_OBJECTS``) that are absent."""
        return ()

    def head_revision(self) -> str:
        """The revision this code's migrations end at."""
        return self._head()

    def _head(self) -> str:
        if self._head_revision is None:
            from alembic.script import ScriptDirectory

            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            self._head_revision = ScriptDirectory.from_config(cfg).get_current_head() or ""
        return self._head_revision

    # -- writes ----------------------------------------------------------------------------------
    def write_batch(self, events: Sequence[Row], turns: Sequence[Row], finishes: Sequence[Row], *,
                    edges: Sequence[Row] = (), touches: Sequence[Row] = ()) -> list[int]:
        """See :meth:`Store.write_batch`; also, in the same transaction, the graph's edges:

        * ``edges``: journaled edge records ``(record_id, src, dst, type, weight, at)``, applied in
          order after the inserts (see ``GraphSql.apply_edge_records``);
        * automatic edges (``graph_writes``): ``turn -> input`` for inserted turns, and each
          finished turn's ``output`` edge following its stored (winning) finish;
        * tombstoned events, and edges (any of the above) with a forgotten end, are left out and
          settled with the batch (a forgotten id that comes back stays forgotten until restored);
          with decay on (``decay_writes``) ``touches`` ``(record_id, kind, item_id, at)`` count
          recalls and promote the items (see ``DecaySql.apply_touches``).
        """
        dw, gw = self.decay_writes, self.graph_writes
        with self._errors(), self._raw_write() as cur:
            # Forget works with decay off too (a request): its tombstones hold. One look-up for the batch.
            forgotten = self.forgotten_view(cur) if dw.tombstones else Forgotten()
            forgotten.ask(batch_ids(events, turns, finishes, edges, gw.enabled and gw.turn_edges))
            gone = forgotten.of_kind(KIND_EVENT)
            events = [e for e in events if e[0] not in gone] if gone else events
            if events:
                cur.executemany(self.insert_event_sql, events)
                self.queue_for_index(cur, KIND_EVENT, [e[0] for e in events])
            if turns:
                cur.executemany(self.insert_turn_sql, turns)
                self.turn_input_edges(cur, turns, forgotten)
            if edges:
                self.apply_edge_records(cur, edges, forgotten)
            if touches and dw.enabled:
                self.apply_touches(cur, [tuple(t[1:4]) for t in touches], dw.initial_zones)
            if not finishes:
                return []
            # In primary-key order: two processes finishing overlapping turns then lock rows in
            # the same order, which keeps InnoDB from picking one of them as a deadlock victim.
            winners = sorted(latest_finishes(finishes), key=lambda f: f[0])
            matched = sum(self._apply_finishes(cur, chunk) for chunk in finish_chunks(winners, self.finish_chunk_rows))
            self.turn_output_edges(cur, [w[0] for w in winners], forgotten)
            if matched == len(winners):
                return []
            # Fewer rows matched than turns finished: either a turn is absent (the finish waits for
            # it) or a newer finish is already stored (this one lost, which is *not* "missing").
            present = self._present_turns(cur, [w[0] for w in winners])
            return [i for i, f in enumerate(finishes) if f[0] not in present]

    def _apply_finishes(self, cur: Any, rows: Sequence[Row]) -> int:
        """Apply one chunk of winning finishes; returns how many turn rows matched.

        Default (SQLite, in-process): the guarded UPDATE through ``executemany``, one prepared
        statement stepped per row with no round trip to pay. Network dialects override this with
        one statement per chunk.
        """
        p = self.param
        sql = (f"UPDATE turns SET status={p}, error={p}, final_output_obs_id={p}, finished_at={p} "
               f"WHERE turn_id={p} AND {FINISH_WINS.format(stored='finished_at', new=p)}")
        cur.executemany(sql, [(f[1], f[2], f[3], f[4], f[0], f[4]) for f in rows])
        return int(cur.rowcount)

    def _present_turns(self, cur: Any, ids: Sequence[str]) -> set[str]:
        present: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            cur.execute(f"SELECT turn_id FROM turns WHERE turn_id IN ({', '.join([self.param] * len(chunk))})", chunk)
            present.update(r[0] for r in cur.fetchall())
        return present

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

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - ping answers yes or no, never raises
            return False

    def before_fork(self) -> None:
        """Called in the parent just before ``os.fork()`` (see ``memory._forking``)."""

    def after_fork_in_parent(self) -> None:
        """Called in the parent just after ``os.fork()``."""

    def after_fork_in_child(self) -> None:
        """Let go of the parent's pooled connections without closing them (in a forked child):
        closing would say goodbye on sockets the parent still uses."""
        with contextlib.suppress(Exception):
            self.engine.dispose(close=False)

    def _drop_pool(self) -> None:
        """Close every pooled connection (dialects may need to guard this)."""
        self.engine.dispose()

    def dispose(self) -> None:
        with contextlib.suppress(Exception):
            self._drop_pool()
        # A DBAPI connection dropped without close() (sqlite3 keeps a self-referencing statement
        # cache) holds its file handles until the cyclic GC runs; dispose means "let go now".
        gc.collect()
