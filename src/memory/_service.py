"""MemoryService: the fail-open boundary between a chat core and storage.

The write methods (``append_event``, ``append_turn``, ``finish_turn``) never raise and never
wait on the database: they coerce, assign a time-ordered id, append one framed record to the
local journal (the record is then acknowledged and survives ``kill -9``), and return. A
background writer drains the journal into the database. Reads merge what is still pending in
memory (L1) with the database (L2), deduplicated by id, so a record appended a moment ago is
visible whether or not it has been written yet.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any, TypeVar

from . import _forking
from ._audit import RECALL, AuditSink, open_audit_log
from ._config import Config, load_config
from ._disabled import DisabledMemoryService, disabled_by_env
from ._errors import StoreError
from ._graph_module import GraphModule
from ._ids import IdGenerator
from ._records import (EVENT, FINISH, STATUS_RUNNING, TOUCH, TURN, EventRecord, TurnRecord, event_from_row,
                       to_json, to_key, to_status, turn_from_row)
from ._touches import TouchBuffer
from .decay import Decay, ForgetResult, RestoreResult
from .index import Hit
from .index._module import RecallModule
from .queue._writer import RateLimitedLog, WriteQueue
from .store import DecayWrites, SqlStore, create_store
from .vault import Note, SyncReport, Vault, VaultWatcher

log = logging.getLogger("memory.service")
T = TypeVar("T")


class _Rebuild:
    """Stands in for one of a forked child's parts until its first call builds them all."""

    def __init__(self, service: MemoryService, part: str) -> None:
        self._service, self._part = service, part

    def __getattr__(self, name: str) -> Any:
        self._service._rebuild_after_fork()
        return getattr(getattr(self._service, self._part), name)


def _from_pickle(config: Config, start_writer: bool, start_vault: bool) -> MemoryService:
    return MemoryService(config, start_writer=start_writer, start_vault=start_vault)


def _close_at_exit(ref: weakref.ReferenceType[MemoryService]) -> None:
    service = ref()
    if service is not None:
        service.close(timeout=5.0)


class MemoryService:
    """Persistence for events, turns and the vault, behind a contract that never fails the caller."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.monotonic,
                 start_writer: bool = True, start_vault: bool = True) -> None:
        """Build the service; returns without touching the database.

        ``start_writer=False`` leaves the background writer stopped until ``service.queue.start()``
        (for benchmarks and tools that want to stage records first); ``start_vault=False`` skips
        the start-up vault sync and the watcher (``vault_sync()`` still works).
        """
        self.config = config
        self._clock = clock
        self._start_writer, self._start_vault = start_writer, start_vault
        self._ids = IdGenerator()
        self._warn = RateLimitedLog(log, config.logging.warn_interval_s, clock)
        self._closed = False
        self._detached = False  # True in a forked child until its own parts are built
        self._fork_lock = threading.Lock()
        # One per service, not per build: the log handles a fork itself (the child writes its own).
        self.audit: AuditSink = open_audit_log(config.audit)
        try:
            self._build()
        except BaseException:
            self.audit.close(timeout=0.5)  # nothing may be left running when construction fails
            raise
        self._atexit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit_hook)
        _forking.track(self)

    def _build(self) -> None:
        """Build (or, in a forked child, rebuild) the parts: store, queue + writer, vault + watcher."""
        config = self.config
        self.store: SqlStore = create_store(config.database)
        self.queue = WriteQueue(config.failure_queue, self.store, clock=self._clock,
                                warn_interval=config.logging.warn_interval_s,
                                audit=self.audit if self.audit.enabled else None)  # None: no observing
        # Before any thread starts: it tells the store which automatic edges to write.
        self.graph = GraphModule(config.graph, self.store, submit=self.queue.submit,
                                 pending=self.queue.pending_items, ids=self._ids, online=self._online,
                                 warn=lambda key, msg: self._warn.warning(key, "%s", msg))
        self.vault = Vault(config.vault, self.store, audit=self.audit.emit)
        # Also before any thread: the writer leaves forgotten events out and applies touches.
        self.store.decay_writes = DecayWrites(enabled=config.decay.enabled,
                                              initial_zones=dict(config.decay.initial_zones))
        self.decay = Decay(self.store, config.decay, vault_root=config.vault.root_path, audit=self.audit)
        self._touches = TouchBuffer(config.failure_queue.max_in_memory)
        self._watcher = VaultWatcher(self.vault, config.vault.debounce_ms / 1000, prepare=self.store.initialize)
        self.recall_index = RecallModule(
            config.recall, self.store, pending_events=self._pending_event_rows, online=self._online,
            offline_notes=self.vault.list_knowledge, ready=lambda: bool(self.queue.initialized),
            warn=lambda key, msg: self._warn.warning(key, "%s", msg))
        if self.recall_index.query is not None and config.graph.enabled:
            self.recall_index.query.neighbours = self.graph.neighbours  # recall.graph_boost's walk
        # Threads start only once every part exists: nothing is left running if a part fails.
        if self._start_writer:
            self.queue.start()
            self.recall_index.start()
            self.decay.start()  # the scheduler (one run at a time among processes: a lease)
        # Start-up sync (and, with vault.watch, the live watcher) run on their own thread.
        if self._start_vault:
            self._watcher.start(initial_sync=True, watch=config.vault.watch)

    # -- fork ---------------------------------------------------------------------------------------
    def _before_fork(self) -> None:
        if not self._detached and not self._closed:
            self.store.before_fork()

    def _after_fork_in_parent(self) -> None:
        if not self._detached and not self._closed:
            self.store.after_fork_in_parent()

    def _after_fork_in_child(self) -> None:
        """Called in a forked child (see ``memory._forking``): let go of the parent's parts without
        touching its files or connections; the child's own are built on its first call."""
        self._fork_lock = threading.Lock()
        self._ids = IdGenerator()  # its lock may have been held by a parent thread at fork time
        # Let go of every real part, even in a child that was itself still building its own
        # when it forked (never append into a segment another process maps).
        queue, store = self.__dict__.get("queue"), self.__dict__.get("store")
        if queue is not None and not isinstance(queue, _Rebuild):
            queue.abandon()
        if store is not None and not isinstance(store, _Rebuild):
            with contextlib.suppress(Exception):
                store.after_fork_in_child()  # the parent's connections stay the parent's
        if self._closed:
            return
        self._detached = True
        self.queue = _Rebuild(self, "queue")  # type: ignore[assignment]
        self.store = _Rebuild(self, "store")  # type: ignore[assignment]
        self.vault = _Rebuild(self, "vault")  # type: ignore[assignment]
        self._watcher = _Rebuild(self, "_watcher")  # type: ignore[assignment]
        self.recall_index = _Rebuild(self, "recall_index")  # type: ignore[assignment]
        self.decay = _Rebuild(self, "decay")  # type: ignore[assignment]
        self.graph = _Rebuild(self, "graph")  # type: ignore[assignment]

    def _rebuild_after_fork(self) -> None:
        with self._fork_lock:
            if self._detached:
                self._build()
                self._detached = False

    def __reduce__(self) -> tuple[Any, ...]:
        # A service handed to a ``spawn`` child (multiprocessing, ProcessPoolExecutor) is rebuilt
        # there from its config: its own slot, journal and writer, never a copy of ours.
        return (_from_pickle, (self.config, self._start_writer, self._start_vault))

    @classmethod
    def from_config(cls, path_or_mapping: str | PathLike[str] | Mapping[str, Any] = "config/memory.yaml",
                    **kwargs: Any) -> MemoryService:
        """Build from a YAML file or a mapping. Raises ConfigError for an invalid config only.

        Kill switch: with ``MEMORY_ENABLED=0`` in the environment this returns a
        :class:`~memory.DisabledMemoryService` instead — same methods, no I/O, records still
        get ids — so an operator can take memory out without touching the core.
        """
        if disabled_by_env():
            return DisabledMemoryService()  # type: ignore[return-value]
        return cls(load_config(path_or_mapping), **kwargs)

    def __enter__(self) -> MemoryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        slot = None if self._detached else self.queue.slot
        where = slot.path if slot is not None else "memory-only" if not self._detached else "not built yet"
        return f"<MemoryService {self.config.database.safe_dsn} queue={where}>"

    # -- writes: never raise ---------------------------------------------------------------------------
    def append_event(self, obs: Any, session_key: Any, gate_result: Any = None, meta: Any = None) -> EventRecord:
        """Record one inbound observation. Returns at once with the stored form; never raises."""
        try:
            rec = EventRecord(self._ids.new_id(), time.time(), to_key(session_key), to_json(obs),
                              None if gate_result is None else to_json(gate_result),
                              None if meta is None else to_json(meta))
            self.queue.submit(EVENT, (rec.event_id, rec.ts, rec.session_key, rec.obs_json, rec.gate_json,
                                      rec.meta_json))
            return rec
        except Exception as exc:  # noqa: BLE001 - the caller's flow must never see our failure
            self._warn.warning("append", "append_event failed internally: %s", exc)
            return EventRecord(self._ids.new_id(), time.time(), "", "null")

    def append_turn(self, session_key: Any, input_event_id: Any, plan: Any = None, meta: Any = None) -> TurnRecord:
        """Start one agent turn (status ``running``). Never raises."""
        try:
            rec = TurnRecord(self._ids.new_id(), to_key(session_key),
                             None if input_event_id is None else to_key(input_event_id),
                             None if plan is None else to_json(plan), None if meta is None else to_json(meta),
                             STATUS_RUNNING, None, None, time.time(), None)
            self.queue.submit(TURN, rec.row())
            return rec
        except Exception as exc:  # noqa: BLE001
            self._warn.warning("append", "append_turn failed internally: %s", exc)
            return TurnRecord(self._ids.new_id(), "", None)

    def finish_turn(self, turn_id: Any, final_output_obs_id: Any = None, status: Any = "ok",
                    error: Any = None) -> None:
        """Finish a turn with ``ok`` or ``error``. ``error=None`` clears an earlier error. Never raises."""
        try:
            st, err = to_status(status, error)
            out = None if final_output_obs_id is None else to_key(final_output_obs_id)
            self.queue.submit(FINISH, (to_key(turn_id), st, err, out, time.time()))
        except Exception as exc:  # noqa: BLE001
            self._warn.warning("append", "finish_turn failed internally: %s", exc)

    # -- reads: L1 (pending in memory) merged with L2 (database) ------------------------------------------
    def _db(self, fn: Callable[[], T], default: T) -> T:
        if self.queue.breaker.is_open or self._closed:
            return default  # don't make a reader pay a connect timeout during a known outage
        try:
            return fn()
        except StoreError as exc:
            self._warn.warning("read", "database read failed, answering from memory only: %s", exc)
            return default

    def get_event(self, event_id: str) -> EventRecord | None:
        for it in reversed(self.queue.pending_items()):
            if it.kind == EVENT and it.row[0] == event_id:
                return event_from_row(it.row)
        row = self._db(lambda: self.store.get_event(event_id), None)
        return event_from_row(row) if row else None

    def get_recent_events(self, session_key: Any, limit: int = 20) -> list[EventRecord]:
        """Up to ``limit`` events of a session, newest first, each id once."""
        key = to_key(session_key)
        found: dict[str, tuple[Any, ...]] = {}
        for it in self.queue.pending_items():  # snapshot L1 *before* reading L2: nothing falls between
            if it.kind == EVENT and it.row[2] == key:
                found[it.row[0]] = it.row
        for row in self._db(lambda: self.store.recent_events(key, limit), []):
            found.setdefault(row[0], row)
        ids = sorted(found, reverse=True)[: max(0, int(limit))]
        return [event_from_row(found[i]) for i in ids]

    def _pending_turns(self) -> tuple[dict[str, TurnRecord], dict[str, list[tuple[Any, ...]]]]:
        turns: dict[str, TurnRecord] = {}
        finishes: dict[str, list[tuple[Any, ...]]] = {}
        for it in self.queue.pending_items():
            if it.kind == TURN:
                r = it.row
                turns[r[0]] = TurnRecord(r[0], r[1], r[2], r[3], r[4], r[5], None, None, r[6], None)
            elif it.kind == FINISH:
                finishes.setdefault(it.row[0], []).append(it.row)
        return turns, finishes

    @staticmethod
    def _apply(turn: TurnRecord, finishes: dict[str, list[tuple[Any, ...]]]) -> TurnRecord:
        for fin in sorted(finishes.get(turn.turn_id, ()), key=lambda f: f[4]):
            turn = turn.finished(fin)
        return turn

    def get_turn(self, turn_id: str) -> TurnRecord | None:
        pending, finishes = self._pending_turns()
        turn = pending.get(turn_id)
        if turn is None:
            row = self._db(lambda: self.store.get_turn(turn_id), None)
            turn = turn_from_row(row) if row else None
        return None if turn is None else self._apply(turn, finishes)

    def get_recent_turns(self, session_key: Any, limit: int = 20) -> list[TurnRecord]:
        """Up to ``limit`` turns of a session, newest first, each id once, pending finishes applied."""
        key = to_key(session_key)
        pending, finishes = self._pending_turns()
        found = {t.turn_id: t for t in pending.values() if t.session_key == key}
        for row in self._db(lambda: self.store.recent_turns(key, limit), []):
            if row[0] not in found:
                found[row[0]] = turn_from_row(row)
        ids = sorted(found, reverse=True)[: max(0, int(limit))]
        return [self._apply(found[i], finishes) for i in ids]

    # -- recall ---------------------------------------------------------------------------------------------
    def _online(self) -> bool:
        return not self._closed and not self.queue.breaker.is_open

    def _pending_event_rows(self) -> list[tuple[Any, ...]]:
        return [it.row for it in self.queue.pending_items() if it.kind == EVENT]

    def recall(self, query: Any, k: int | None = None, *, kinds: Any = ("knowledge", "event"),
               session_key: Any = None, since: Any = None, until: Any = None) -> list[Hit]:
        """What matters for ``query``: notes and events ranked by keyword and vector search, fused
        with recency (see :mod:`memory.index._recall`). Best first, at most ``k`` (default from
        ``recall.default_k``).

        ``session_key=None`` searches **every** session's events: a core serving several users
        should always pass the session (notes are shared and always searched). ``since``/``until``
        take a datetime (naive = UTC), epoch seconds or a span such as ``"7d"``. Never raises,
        except ``ValueError`` for ``kinds`` other than ``knowledge``/``event``; with the database
        down it answers from the vault files and the pending window, keyword only.
        """
        parts = self.recall_index
        try:
            hits = parts.recall(query, k, kinds=kinds, session_key=session_key, since=since, until=until)
            self._audit_recall(query, k, kinds, session_key, hits)
            self._touch(hits)
            return hits
        except ValueError as exc:
            if "kinds" in str(exc):
                raise
            self._warn.warning("recall", "recall failed internally: %s", exc)
            return []
        except Exception as exc:  # noqa: BLE001 - recall must never fail the caller
            self._warn.warning("recall", "recall failed internally: %s", exc)
            return []

    def _touch(self, hits: list[Hit]) -> None:
        """Recall touched these items (decay counts and promotes them): journaled like any record,
        so recall never waits on the database and a touch survives a restart. While the database
        is down or the writer is behind they wait in memory, one per item (``memory._touches``),
        so statistics never take the journal's room from events."""
        if not self.config.decay.enabled or not hits:
            return
        try:
            self._submit_touches(Decay.touches_for(hits, time.time()))
        except Exception as exc:  # noqa: BLE001 - a touch is never worth failing a recall
            self._warn.warning("touch", "recording recall touches failed: %s", exc)

    def _submit_touches(self, touches: list[tuple[str, str, float]]) -> None:
        queue = self.queue
        backlog = queue.breaker.is_open or queue.pending_count() > self.config.failure_queue.max_in_memory
        for kind, item_id, at in self._touches.offer(touches, backlog):
            queue.submit(TOUCH, (self._ids.new_id(), kind, item_id, at))

    # -- decay: forget and restore -----------------------------------------------------------------------
    def forget(self, item_id: Any, reason: Any = "forgotten by request") -> ForgetResult:
        """Take an event or note out of memory: out of recall, its edges and vectors gone, a
        tombstone kept (an event's row is deleted; a note's file moves to ``vault/.trash/<date>/``,
        never unlinked). Pinned notes and ``md/`` are never forgotten. Never raises: the result
        says whether it happened and why not (the database must answer; nothing is queued)."""
        item = to_key(item_id)
        if not self._online():  # a known outage: answer at once
            return ForgetResult(False, item, None, "not forgotten: the database does not answer (try again later)")
        try:
            return self.decay.forget(item, to_key(reason) or "forgotten by request")
        except Exception as exc:  # noqa: BLE001 - StoreError (database away) or a bug: never the caller's
            self._warn.warning("forget", "forget %s failed: %s", item, exc)
            return ForgetResult(False, item, None, f"not forgotten: {exc}")

    def restore(self, item_id: Any) -> RestoreResult:
        """Bring a forgotten item back (its row, or its file from the trash) and re-index it. Never raises."""
        item = to_key(item_id)
        if not self._online():  # a known outage: answer at once
            return RestoreResult(False, item, None, "not restored: the database does not answer (try again later)")
        try:
            return self.decay.restore(item)
        except Exception as exc:  # noqa: BLE001
            self._warn.warning("restore", "restore %s failed: %s", item, exc)
            return RestoreResult(False, item, None, f"not restored: {exc}")

    def _audit_recall(self, query: Any, k: Any, kinds: Any, session_key: Any, hits: list[Hit]) -> None:
        if not self.audit.enabled:
            return
        # The query as configured (its hash by default: a log read by operators should not hold
        # what users typed); the hits by id, so "why did it answer that" can be traced.
        self.audit.emit(RECALL, **self.audit.query_field(query), k=k, kinds=kinds, session_key=session_key,
                        hits=len(hits), ids=[f"{h.kind}:{h.id}" for h in hits[:20]])

    # -- the vault: files are the truth; reads come from them -------------------------------------------
    def get_system_prompt(self) -> str | None:
        """Body of ``md/system.md`` (front matter stripped), or None."""
        note = self.vault.read_config("system")
        return None if note is None else note.content

    def upsert_system_prompt(self, content: str, metadata: dict[str, Any] | None = None) -> Note:
        return self.vault.write_config("system", content, metadata)

    def get_user_profile(self, user_id: Any) -> str | None:
        """Body of ``md/users/<user_id>.md``, or None."""
        note = self.vault.read_user(user_id)
        return None if note is None else note.content

    def upsert_user_profile(self, user_id: Any, content: str, metadata: dict[str, Any] | None = None) -> Note:
        return self.vault.write_user(user_id, content, metadata)

    def get_config(self, key: str) -> Note | None:
        return self.vault.read_config(key)

    def upsert_config(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note:
        return self.vault.write_config(key, content, metadata)

    def get_knowledge(self, key: str) -> Note | None:
        return self.vault.read_knowledge(key)

    def list_knowledge(self, category: str | None = None) -> list[Note]:
        return self.vault.list_knowledge(category)

    def upsert_knowledge(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note:
        """Write ``knowledge/<key>.md`` atomically. If a human changed it since the last sync, the
        service's version goes to a conflict copy instead (see ``Note.conflict_path``)."""
        return self.vault.write_knowledge(key, content, metadata)

    def delete_knowledge(self, key: str) -> bool:
        return self.vault.delete_knowledge(key)

    def search_knowledge(self, query: str, limit: int = 5) -> list[Note]:
        return self.vault.search(query, limit)

    def vault_sync(self) -> SyncReport:
        """Scan the vault now and bring the database in line with it."""
        return self.vault.sync(reconcile=True)

    def vault_check(self) -> dict[str, Any]:
        return self.vault.check()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Bring the schema to head now (the writer also does this on its own). Raises StoreError."""
        self.store.initialize()
        self.queue.initialized = True

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every record accepted so far is committed or dead-lettered. True if so."""
        return self.queue.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush what can be flushed within ``timeout``, then stop. Idempotent; also run at exit.

        Whatever could not be written stays in the journal and is replayed by the next start.
        """
        if self._closed:
            return True
        self._closed = True
        atexit.unregister(self._atexit_hook)
        _forking.untrack(self)
        if self._detached:
            with contextlib.suppress(Exception):
                self.audit.close(timeout=2.0)
            return True  # a forked child that never used memory: nothing of its own to close
        if self.config.decay.enabled:
            with contextlib.suppress(Exception):  # touches held through an outage that has ended
                self._submit_touches([])
        try:
            ok = self.queue.close(timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("close: queue shutdown failed: %s", exc)
            ok = False
        self._watcher.shutdown()
        with contextlib.suppress(Exception):
            self.recall_index.stop(timeout=2.0)
        with contextlib.suppress(Exception):
            self.decay.stop(timeout=2.0)
        self.store.dispose()
        with contextlib.suppress(Exception):
            self.audit.close(timeout=2.0)
        return ok

    def check(self) -> list[str]:
        """Reconcile the write path's counters with what is really held (call when idle)."""
        return self.queue.check()

    def _plugin_health(self, name: str, plugin: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
        """A plug-in's health section; one that raises is reported, never passed on (see ``_plugin``)."""
        try:
            section, problems = plugin.health()
            return dict(section), tuple(problems)
        except Exception as exc:  # noqa: BLE001 - health must answer whatever a plug-in does
            self._warn.warning(f"health-{name}", "the %s plug-in's health check failed: %s", name, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}, (f"the {name} plug-in's health check failed: {exc}",)

    def health(self) -> dict[str, Any]:
        """Status, reasons (``warnings``), database reachability, what is pending, every write-path counter.

        ``status`` is ``ok`` only when the schema is at head too; ``starting`` while the writer has
        not brought it there yet; see :mod:`memory._health` for every status and its rule.
        """
        from ._health import HealthFacts, assess, probe_database

        q = self.queue.stats()
        probe = None
        if not self._closed and not self.queue.breaker.is_open:
            # The breaker open means a known outage: answer at once instead of paying a connect timeout.
            probe = probe_database(self.store, self.config.database.url.password)
        reachable = probe is not None and probe.answered
        conflicts = self.vault.conflicts()
        vault_report = self.vault.report()
        schema_ready = bool(self.queue.initialized)
        index_report, index_problems = self._plugin_health("index", self.recall_index)
        graph_report, graph_problems = self._plugin_health("graph", self.graph)
        if not self.config.decay.enabled or (self._online() and schema_ready):
            decay_report, decay_problems = self._plugin_health("decay", self.decay)
        else:
            # A known outage, a closed service, or a schema not at head yet (decay's tables may not
            # exist): answer at once; the database's own warning says why.
            decay_report, decay_problems = {"enabled": True, "unavailable": True}, ()
        if self.config.decay.enabled and not self._detached:
            # Recall touches waiting out an outage (one per item) and those shed beyond the bound.
            decay_report = {**decay_report, "touches": dataclasses.asdict(self._touches.stats())}
        verdict = assess(HealthFacts(
            closed=self._closed, reachable=reachable, schema_ready=schema_ready,
            pending_disk=int(q.get("pending_disk", 0)), dropped=dict(q.get("dropped") or {}),
            quarantined=int(q.get("quarantined", 0)), conflicts=len(conflicts),
            journal_problem=(q.get("journal_problem") or "memory only") if q.get("journal") == "memory-only" else None,
            unreadable_folders=len(vault_report["unreadable_folders"]),
            notes_not_in_database=len(vault_report["not_in_database"]),
            plugin_problems=index_problems + graph_problems + decay_problems,
            latency_ms=None if probe is None else probe.latency_ms,
            latency_warn_ms=self.config.health.latency_warn_ms, backlog_warn=self.config.health.backlog_warn))
        error = probe.error if probe is not None else (q.get("last_error") or None)
        return {
            "status": verdict.status,
            "warnings": list(verdict.warnings),
            "database": {"reachable": reachable, "dialect": self.store.dialect,
                         "dsn": self.config.database.safe_dsn, "schema_ready": schema_ready,
                         "connectable": None if probe is None else probe.connected, "error": error,
                         "latency_ms": None if probe is None else probe.latency_ms,
                         "schema_revision": None if probe is None else probe.revision,
                         "schema_head": self.store.head_revision()},
            "pending": q["pending"],
            "queue": q,
            "vault": {"root": str(self.vault.root), "database_behind": self.vault.db_pending,
                      "invalid_files": len(vault_report["problems"]), "conflicts": conflicts,
                      "problems": vault_report["problems"],
                      "unreadable_folders": vault_report["unreadable_folders"],
                      "not_in_database": vault_report["not_in_database"],
                      "forgotten": vault_report["forgotten"],
                      "watching": self._watcher.observer is not None and not self._closed},
            "index": index_report,
            "graph": graph_report,
            "decay": decay_report,
            "audit": self.audit.stats(),
        }
