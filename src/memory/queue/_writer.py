"""The write queue: the hot path's journal append, and the writer that drains it into the store.

Every record flows one way::

    submit() ─ encode ─ journal append (acknowledged: survives kill -9) ─ memory window
                                 │                                            │
                                 └──── disk (spilled / left by an earlier run) ┴─► writer batch
    writer batch ─► store.write_batch ─┬─ ok ─────────► committed; read position advances
                                       ├─ transient ──► whole batch waits (backoff, breaker)
                                       └─ permanent ──► bisect; a bad row alone → retry list
    retry list ─ max_retries permanent failures ─► dead-letter file
    low watermark passes a whole segment ─► state.json rewritten ─► segment deleted

Each invariant lives in one module: the slot and its saved state in :mod:`._slot`, segments
and disk accounting in :mod:`._journal`, the memory window in :mod:`._window`, retry timing in
:mod:`._retry`, the counters in :mod:`._accounting`, the fsync cadence in :mod:`._sync`, the fate of
each record of a batch (commit, retry, dead letter) in :mod:`._batch`, where a run starts (slot,
journal or memory-only, resume position) in :mod:`._resume`, what the audit log hears in
:mod:`._events`. This module only moves records between them.

Transient failures never count against ``max_retries``: a database that is down for an hour
must not turn an hour of records into dead letters. Only failures caused by the row itself
(the database rejects it, or a single-row batch keeps breaking a healthy connection) count.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._config import FailureQueueConfig
from ..store import Store
from ._accounting import Ledger, QueueView, check, stats
from ._batch import KEPT_TRANSIENT, RESOLVED, BatchWriter
from ._deadletter import DeadLetter
from ._events import Observation, QueueAudit, Sink
from ._item import Item, Pos, RateLimitedLog
from ._journal import DEAD_LETTER_FILE, DiskFull, quarantine
from ._reader import SpillReader
from ._resume import earlier_backlog, open_journal, start_position
from ._retry import Breaker, RetryList
from ._segments import encode
from ._slot import SlotState
from ._sync import JournalSyncer
from ._window import MemoryWindow

log = logging.getLogger("memory.queue")

IDLE_WAIT = 5.0  # seconds an idle writer sleeps unless an append wakes it


class WriteQueue:
    """Journal + memory window + writer. Components follow initialize / loop_once / shutdown."""

    def __init__(self, config: FailureQueueConfig, store: Store, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, warn_interval: float = 30.0,
                 audit: Sink | None = None) -> None:
        """``audit`` (the audit log, optional) hears of outages, replays and dead letters."""
        self.cfg, self.store, self.clock, self.wall = config, store, clock, wall
        self.warn = RateLimitedLog(log, warn_interval, clock)
        self.root = Path(config.path)
        self.slot, self.state, self.journal = open_journal(self.root, config)
        self._lock = self.journal.lock  # one lock guards journal, memory window and counters
        self.ledger = Ledger(self._lock)
        self.window = MemoryWindow(config.max_in_memory)
        self.volatile = MemoryWindow(config.max_in_memory)  # journal unusable/full: memory only
        self.retry = RetryList(self._lock)
        self.dead = DeadLetter(self.root / DEAD_LETTER_FILE, int(config.dead_letter_max_mb * 1024 * 1024))
        self.audit = QueueAudit(audit)
        self.dead.on_written = self.audit.dead_letter
        self.breaker = Breaker(config.breaker_threshold, config.retry_base_delay_s, config.retry_max_delay_s)
        self.batches = BatchWriter(config, store, self.ledger, self.retry, self.dead, self.breaker, self._lock,
                                   clock, wall, self.warn, self._backlog)
        self._inflight: list[Item] = []
        self._inflight_next: Pos | None = None
        self._inflight_mem_last = self._inflight_vol_last = -1
        self._last_save = 0.0
        self._quarantined_files = 0
        self.initialized = False
        self.closed = False
        self._started_up = False
        self._state_dirty = True
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._idle = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._final_lock = threading.Lock()
        self._writer_done = False
        self._finalize_on_exit = False
        self._finalized = False
        self.lifetime: dict[str, Any] = dict(self.state.lifetime)
        self._pos = start_position(self.journal, self.state.watermark)
        self.reader = SpillReader(self.journal, self.root, self.warn)
        self.syncer = JournalSyncer(self.journal, config.fsync_interval_ms / 1000) \
            if config.fsync == "interval" and not self.journal.memory_only else None
        for path in self.journal.unknown:
            if quarantine(self.root, path.name, source=path):
                self._quarantined_files += 1
                self.warn.warning("unknown", "moved unknown file %s from the queue folder to quarantine", path.name)

    # -- start-up ----------------------------------------------------------------------------------
    def _start_up(self) -> None:
        """Writer-thread start-up work (never in the constructor): trim crashed runs' preallocated
        tails, load the dead-letter ids, count the backlog so accepted/pending are exact."""
        self.journal.trim_unsealed()
        try:
            self.dead.load()
        except OSError as exc:  # an unusable folder: dead letters go nowhere, records stay pending
            self.dead.loaded = True
            self.warn.warning("deadletter-load", "cannot read the dead-letter file (%s)", exc)
        self.ledger.add_backlog(earlier_backlog(self.journal, self.state, self._pos))
        self._started_up = True

    @property
    def quarantined(self) -> int:
        """Damaged ranges and unknown files moved to the quarantine folder by this run."""
        return self._quarantined_files + self.reader.quarantined

    @property
    def committed(self) -> int:
        return self.ledger.committed

    @property
    def dead_lettered(self) -> int:
        return self.ledger.dead_lettered

    # -- hot path ----------------------------------------------------------------------------------
    def submit(self, kind: int, row: tuple[Any, ...]) -> None:
        """Accept one record. Never raises, never blocks on the database."""
        ledger = self.ledger
        try:
            data, row = encode(kind, row)
        except Exception as exc:  # noqa: BLE001 - the fail-open promise outranks everything
            with self._lock:
                ledger.accepted += 1
                ledger.dropped["unencodable"] += 1
            self.warn.warning("encode", "dropped a record that could not be encoded: %s", exc)
            return
        with self._lock:
            ledger.accepted += 1
            if self.closed:
                ledger.dropped["closed"] += 1
                outcome, err = "closed", None
            else:
                try:
                    seg, start, end = self.journal.append(data)
                except DiskFull as exc:
                    outcome, err = self._hold(kind, row, "disk_full"), exc
                except OSError as exc:
                    outcome, err = self._hold(kind, row, "journal_error"), exc
                else:
                    if self._idle:
                        self._idle = False
                        self._wake.set()  # only on the idle → busy transition, not per append
                    exp = ledger.expected
                    exp[seg] = exp.get(seg, 0) + 1
                    self.window.append(Item(seg, start, end, kind, row))
                    return None
        self._explain(outcome, err)
        return None

    def _hold(self, kind: int, row: tuple[Any, ...], reason: str) -> str:
        # Called with the lock held. The record can still reach the database from memory; only
        # when memory is full too is it dropped (counted by reason).
        if len(self.volatile) < self.cfg.max_in_memory:
            self.volatile.append(Item(-1, 0, 0, kind, row))
            if self._idle:
                self._idle = False
                self._wake.set()
            return "held:" + reason
        self.ledger.dropped[reason] += 1
        return reason

    def _explain(self, outcome: str, err: Exception | None) -> None:
        if outcome == "closed":
            self.warn.warning("closed", "record appended after close() was dropped")
        elif outcome == "held:disk_full":
            self.warn.warning("disk_full_held", "queue folder reached max_disk_mb=%s; holding new records in memory "
                              "until the backlog drains", self.cfg.max_disk_mb)
        elif outcome == "disk_full":
            self.warn.warning("disk_full", "queue folder reached max_disk_mb=%s and memory is full; record dropped",
                              self.cfg.max_disk_mb)
        elif outcome == "held:journal_error":
            self.warn.warning("journal", "journal write failed (%s); holding records in memory only", err)
        else:
            self.warn.warning("journal_drop", "journal write failed (%s) and memory is full; record dropped", err)

    # -- reads (L1) --------------------------------------------------------------------------------
    def pending_items(self) -> list[Item]:
        """Unresolved records held in memory, oldest first (for read-your-writes). Only a few dozen
        references are copied under the lock; the list is built outside it, never holding up appends."""
        with self._lock:
            vol = self.volatile.snapshot()
            inflight = self._inflight
            mem = self.window.snapshot()
        return [*vol, *self.retry.items(), *inflight, *mem]

    # -- writer thread -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.syncer is not None and self.syncer._thread is None:
            self.syncer.start()
        self._thread = threading.Thread(target=self._run, name="memory-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.loop_once(self.clock())
            except Exception:  # noqa: BLE001 - the writer must outlive its own bugs
                log.exception("writer iteration failed; retrying")
                wait = 1.0
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
        with self._final_lock:
            self._writer_done = True
            final = self._finalize_on_exit
        if final:  # close() gave up waiting for us: the last word on the slot is ours
            self._finalize()

    def wake(self) -> None:
        self._wake.set()

    def initialize(self, now: float) -> bool:
        """Bring the schema to head (the writer's first step, retried like any write)."""
        try:
            self.store.initialize()
        except Exception as exc:  # noqa: BLE001
            wait = self.breaker.failure(now, str(exc))
            self.warn.warning("db", "database not ready (%s); retrying in %.1fs", exc, wait)
            return False
        self.initialized = True
        return True

    def loop_once(self, now: float) -> float:
        """One writer iteration. Returns how long to sleep before the next one."""
        if self.cfg.fsync == "interval" and self.syncer is None and not self.journal.memory_only \
                and now - self.journal.last_sync >= self.cfg.fsync_interval_ms / 1000:
            self.journal.sync()  # stepped by hand (tests): no sync thread
        self.journal.release_pages()
        if not self._started_up:
            self._start_up()
        if not self.breaker.allow(now):
            return self.breaker.retry_at - now
        if not self.initialized and not self.initialize(now):
            self._observe()
            return max(self.breaker.retry_at - now, 0.001)
        self._observe()  # before writing: what waits now (a batch may settle all of it)
        worked = self.batches.retry_due(now)
        if self._inflight or self._fill_inflight():
            worked = True
            if not self._write_inflight(now):
                self._observe()
                return max(self.breaker.retry_at - now, 0.001)
        self._observe()
        self._housekeeping()
        with self._progress:
            self._progress.notify_all()
        if worked:
            return 0.0
        return self._next_due(now)

    def _observe(self) -> None:
        """Tell the audit log what changed (outage, replay); cheap when nothing did."""
        if self.audit.sink is None:
            return
        with self._lock:
            head = self.journal.head_unlocked()
        self.audit.observe(Observation(
            wall=self.wall(), initialized=self.initialized, breaker_open=self.breaker.is_open,
            error=self.breaker.last_error, pending=self.ledger.pending(), head=head, drained_to=self.drained))

    def _next_due(self, now: float) -> float:
        interval = self.cfg.flush_interval_ms / 1000
        nxt = self.retry.next_due()
        due = now + interval if nxt is None else nxt
        with self._lock:
            quiet = (not self.window and not self.retry and not self.volatile and not self._state_dirty
                     and not self.batches.changed
                     and not self.journal.dirty and self._at_head(self._pos))
            if quiet:
                # Nothing at all to do: sleep until an append wakes us (no polling while idle).
                self._idle = True
                return IDLE_WAIT
        return max(0.0, min(interval, due - now))

    # -- building batches ------------------------------------------------------------------------------
    def _fill_inflight(self) -> bool:
        """Take the next batch: memory-only records first, then the stream from the read position."""
        size = self.cfg.batch_size
        next_pos: Pos | None = None
        mem_last = -1
        with self._lock:
            batch = self.volatile.take(size)
            vol_last = batch[-1].n if batch else -1
            self.window.drop_before(self._pos)  # already written (a trim cut short): never stall
            first = self.window.first()
            if first is not None and first.pos == self._pos and len(batch) < size:
                taken = self.window.take(size - len(batch))
                batch += taken
                next_pos, mem_last = (taken[-1].seg, taken[-1].end), taken[-1].n
            first_mem = first.pos if first is not None else None
        if next_pos is None and len(batch) < size:
            read, next_pos = self._read_disk(first_mem, size - len(batch))
            batch += read
        self._inflight, self._inflight_next = batch, next_pos
        self._inflight_mem_last, self._inflight_vol_last = mem_last, vol_last
        return bool(batch) or (next_pos is not None and next_pos != self._pos)

    def _read_disk(self, first_mem: Pos | None, room: int) -> tuple[list[Item], Pos | None]:
        before = self.reader.quarantined
        items, nxt = self.reader.read(self._pos, first_mem, min(room, self.cfg.spill_batch_size))
        if self.reader.quarantined != before:
            self._state_dirty = True  # lifetime counters changed: save them soon
        return items, nxt

    # -- writing ----------------------------------------------------------------------------------------
    def _write_inflight(self, now: float) -> bool:
        """Write the in-flight batch. False on a transient failure (the batch is kept)."""
        todo = [it for it in self._inflight if not it.done]
        dead_keys = self.dead.keys
        if dead_keys:
            for it in todo:
                if it.key in dead_keys:  # dead-lettered by an earlier run: do not try it again
                    it.done = True
                    self.ledger.dead_lettered += 1
            todo = [it for it in todo if not it.done]
        if todo:
            outcome = self.batches.write(todo, now)
            if outcome == KEPT_TRANSIENT:
                self.initialized = False  # re-check the schema before the next write (file replaced, etc.)
            if outcome != RESOLVED:
                return False
        else:
            self.breaker.success()
        self._advance()
        return True

    def _backlog(self) -> bool:
        """True while the stream has records the writer has not taken yet (disk, window, memory)."""
        with self._lock:
            return bool(self.volatile) or self._pos < self.journal.head_unlocked()

    def _advance(self) -> None:
        """The in-flight batch is resolved: move the read position and trim the memory windows."""
        batch, nxt = self._inflight, self._inflight_next
        mem_last, vol_last = self._inflight_mem_last, self._inflight_vol_last
        self._inflight, self._inflight_next = [], None
        self._inflight_mem_last = self._inflight_vol_last = -1
        with self._lock:
            # One locked step each, by sequence number: a concurrent append that evicts from the
            # same end can never make this drop a record that is still pending.
            if vol_last >= 0:
                self.volatile.trim_through(vol_last)
            if nxt is not None:
                self._pos = nxt
            if mem_last >= 0:
                self.window.trim_through(mem_last)
        self.ledger.saw(batch)
        for seg, lost in self.ledger.passed(self._pos).items():
            self.warn.warning("corrupt-loss", "%d records in queue segment %d were destroyed by corruption "
                              "(quarantined)", lost, seg)
        self._state_dirty = True

    # -- housekeeping ------------------------------------------------------------------------------------
    def watermark(self) -> Pos:
        """Oldest position not yet committed or dead-lettered; everything before it is resolved."""
        side = self.retry.positions()
        with self._lock:
            pos = self._pos
        return min([pos, *side])

    def _housekeeping(self, force: bool = False) -> None:
        # state.json only lets a restart skip what is already resolved, so saving it (and the
        # segment deletions that must follow a save) a few times a second is plenty.
        now = self.clock()
        if self.batches.changed:
            self._state_dirty, self.batches.changed = True, False
        if not self._state_dirty or (not force and now - self._last_save < 0.25) or self.slot is None:
            return
        self._last_save = now
        mark = self.watermark()
        self._save_state(mark)
        journal = self.journal
        with journal.lock:
            sizes = dict(journal.sizes)
        # Fully resolved: below the watermark, or the watermark's own segment once sealed and
        # read to its end (a clean stop leaves an empty slot).
        resolved = [s for s in sorted(sizes) if (s < mark[0] or (s == mark[0] and mark[1] >= sizes[s]))
                    and journal.live_end(s) is None]
        keep = self.cfg.max_dump_backups
        for seg in resolved[: len(resolved) - keep] if keep else resolved:
            self.journal.delete(seg)
        self._state_dirty = False

    def lifetime_totals(self) -> dict[str, Any]:
        """Totals over every run of this slot: earlier runs (from state.json) plus this one.

        A record committed after the last save of a run that then crashed is replayed and counted
        again by the next run; the per-run counters in ``stats()`` are exact.
        """
        base = self.lifetime
        dropped = dict(base.get("dropped") or {})
        with self._lock:
            for reason, n in self.ledger.dropped.items():
                dropped[reason] = int(dropped.get(reason, 0)) + n
            committed, dead = self.ledger.committed, self.ledger.dead_lettered
        return {"committed": int(base.get("committed", 0)) + committed,
                "dead_lettered": int(base.get("dead_lettered", 0)) + dead,
                "quarantined": int(base.get("quarantined", 0)) + self.quarantined,
                "dropped": dropped, "runs": int(base.get("runs", 0)) + 1}

    def _save_state(self, mark: Pos) -> None:
        journal = self.journal
        active = journal.active
        # Counts of sealed, unresolved segments (relative to their resume offsets): a restart
        # need not rescan them.
        counts = self.ledger.sealed_counts(after=mark[0], active=active)
        if mark == self._pos and mark[0] != active:
            rem = self.ledger.remaining(mark[0])
            if rem is not None:
                counts[mark[0]] = rem  # the watermark's segment: what is left past it
        with self._lock:
            starts = {s: o for s, o in journal.starts.items() if s > mark[0] and s in journal.sizes}
            nxt = journal.next_id
        starts[mark[0]] = max(journal.start_of(mark[0]), mark[1])
        state = SlotState(watermark=mark, next_segment=max(nxt, mark[0] + 1), starts=starts, counts=counts,
                          lifetime=self.lifetime_totals())
        try:
            state.save(self.slot.path)  # type: ignore[union-attr]
        except OSError as exc:
            self.warn.warning("state", "cannot save queue state (%s); a restart will replay more", exc)

    # -- flush / close / health ----------------------------------------------------------------------------
    def pending_count(self) -> int:
        return self.ledger.pending()

    def drained(self, target: Pos) -> bool:
        if self.retry:
            return False
        with self._lock:
            if self.volatile or self._inflight:
                return False
            pos = self._pos
            at_head = not self.window and self._at_head(pos)
        return pos >= target or at_head

    def _at_head(self, pos: Pos) -> bool:
        return pos >= self.journal.head_unlocked()  # caller holds the lock

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted before this call is committed or dead-lettered."""
        with self._lock:
            target = self.journal.head_unlocked()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.drained(target):
            if self._thread is None or not self._thread.is_alive():
                return False
            self.wake()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._progress:
                self._progress.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        ok = self.flush(timeout)
        with self._lock:
            self.closed = True
        self._stop.set()
        self.wake()
        if self.syncer is not None:
            self.syncer.shutdown()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.1, min(5.0, timeout or 5.0)))
        with self._final_lock:
            if thread is not None and not self._writer_done:
                # The writer is stuck in a database call. Releasing the slot now would let a
                # new process claim it while this writer may still rewrite its state.json: the
                # writer finishes the job itself when the call returns.
                self._finalize_on_exit = True
                self.warn.warning("close", "close(): the writer is still busy; it releases the queue slot "
                                  "when its database call returns")
                return False
        self._finalize()
        return ok

    def _finalize(self) -> None:
        if self._finalized:
            return
        self._finalized = True
        self._spill_volatile()
        self.journal.close()  # sealed first, so a fully resolved last segment can go too
        try:
            self._state_dirty = True
            self._housekeeping(force=True)
        except Exception as exc:  # noqa: BLE001 - closing must finish
            log.warning("close: cannot save queue state: %s", exc)
        if self.slot is not None:
            self.slot.release()

    def _spill_volatile(self) -> None:
        """At close, records held only in memory go to the journal if it takes them now; the rest
        are lost with the process, so they are counted (and logged) as dropped, never silent."""
        with self._lock:
            # done volatile records are committed or already on the retry list (taken below)
            held = [it for it in self.volatile.snapshot() if not it.done]
            self.volatile.clear()
        held += [it for it in self.retry.items() if it.seg < 0]
        lost = 0
        for it in held:
            try:
                data, _ = encode(it.kind, it.row)
                with self._lock:
                    seg, _start, _end = self.journal.append(data)
                    self.ledger.expected[seg] = self.ledger.expected.get(seg, 0) + 1
            except Exception:  # noqa: BLE001 - the journal is full or unusable: counted below
                lost += 1
                continue
            self.retry.remove(it)
        if lost:
            with self._lock:
                self.ledger.dropped["memory_at_close"] += lost
            log.error("close: %d records held only in memory (journal full or unusable, database unreachable) "
                      "were lost", lost)

    def abandon(self) -> None:
        """Drop this queue without touching its files (in a forked child; or to model kill -9).

        Takes no lock: in a forked child a lock may be held by a thread that no longer exists.
        """
        self.closed = True
        self._finalized = True
        self._stop.set()
        lock = threading.Lock()  # appends after this (dropped as "closed") must not deadlock
        self._lock = self.journal.lock = self.ledger.lock = lock
        self.retry.relock(lock)
        self.batches.relock(lock)
        self.journal.abandon()
        if self.slot is not None:
            self.slot.abandon()

    def view(self) -> QueueView:
        side = len(self.retry)
        mark = self.watermark()
        with self._lock:
            led = self.ledger
            return QueueView(led.accepted, led.committed, led.dead_lettered, led.recovered, dict(led.dropped),
                             len(self.window), len(self.volatile), side, self._pos, mark, self.cfg.max_in_memory,
                             self.cfg.max_dump_backups, self._state_dirty or self.batches.changed)

    def check(self) -> list[str]:
        """Reconcile counters with what is really held; call when idle (after flush or close)."""
        return check(self.view(), self.journal)

    def stats(self) -> dict[str, Any]:
        out = stats(self.view(), self.journal)
        out.update({"quarantined": self.quarantined, "breaker_open": self.breaker.is_open,
                    "consecutive_failures": self.breaker.failures, "last_error": self.breaker.last_error,
                    "slot": str(self.slot.path) if self.slot is not None else None,
                    "lifetime": self.lifetime_totals()})
        return out

