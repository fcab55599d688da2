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

The memory window holds the newest ``max_in_memory`` unresolved records (they serve
read-your-writes); older ones are read back from their segment ``spill_batch_size`` at a time.
Transient failures never count against ``max_retries``: a database that is down for an hour
must not turn an hour of records into dead letters. Only failures caused by the row itself
(the database rejects it, or a single-row batch keeps breaking a healthy connection) count.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._config import FailureQueueConfig
from .._errors import StoreRejected, StoreUnavailable
from .._records import EVENT, FINISH, TURN
from ..store import Store
from ._deadletter import DeadLetter
from ._journal import DEAD_LETTER_FILE, DiskFull, Journal, Slot, atomic_write_json, load_state, quarantine
from ._retry import Breaker, backoff
from ._accounting import backlog_counts, check, stats
from ._reader import SpillReader
from ._item import Item, Pos, RateLimitedLog
from ._segments import HEADER_LEN, encode

log = logging.getLogger("memory.queue")

IDLE_WAIT = 5.0  # seconds an idle writer sleeps unless an append wakes it


class WriteQueue:
    """Journal + memory window + writer. Components follow initialize / loop_once / shutdown."""

    def __init__(self, config: FailureQueueConfig, store: Store, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, warn_interval: float = 30.0) -> None:
        self.cfg, self.store, self.clock, self.wall = config, store, clock, wall
        self.warn = RateLimitedLog(log, warn_interval, clock)
        self.root = Path(config.path)
        self.slot = Slot(self.root)
        self._max_disk = int(config.max_disk_mb * 1024 * 1024)
        self.journal = Journal(self.slot, int(config.max_dump_file_size_mb * 1024 * 1024), config.fsync,
                               self._max_disk)
        self._lock = self.journal.lock  # one lock guards journal, memory window and counters
        self.dead = DeadLetter(self.root / DEAD_LETTER_FILE, int(config.dead_letter_max_mb * 1024 * 1024))
        self.breaker = Breaker(config.breaker_threshold, config.retry_base_delay_s, config.retry_max_delay_s)
        self._mem: collections.deque[Item] = collections.deque()
        self._volatile: collections.deque[Item] = collections.deque()  # journal failed: memory only
        self._side: dict[str, Item] = {}  # permanent failures awaiting retry
        self._inflight: list[Item] = []
        self._inflight_next: Pos | None = None
        self._inflight_mem_last = -1  # sequence number of the last memory item in the batch
        self._seq = 0  # sequence number of memory-window items: trimming is a count, not a search
        self._last_save = 0.0
        self._suspect = 0
        self.accepted = self.committed = self.dead_lettered = self.recovered = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._quarantined_files = 0
        # Records expected in each segment (appended by us, or counted in an earlier run's
        # segment) and records the writer has taken from it. When the read position leaves a
        # segment, any difference is records destroyed by corruption: counted, never silent.
        self._expected: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self.initialized = False
        self.closed = False
        self._state_dirty = True
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._idle = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        state = load_state(self.slot.path)
        self.lifetime: dict[str, Any] = dict(state.get("lifetime") or {})
        self._saved_counts: dict[int, int] = {}
        self._saved_first: Pos | None = None  # the watermark the first segment's count starts at
        with contextlib.suppress(AttributeError, TypeError, ValueError, KeyError, IndexError):
            self._saved_first = (int(state["watermark"][0]), int(state["watermark"][1]))
            self._saved_counts = {int(k): int(v) for k, v in (state.get("counts") or {}).items()}
        self._pos = self._start_position(state.get("watermark"))
        self.reader = SpillReader(self.journal, self.root, self.warn)
        for path in self.journal.unknown:
            if quarantine(self.root, path.name, source=path):
                self._quarantined_files += 1
                self.warn.warning("unknown", "moved unknown file %s from the queue folder to quarantine", path.name)

    @property
    def quarantined(self) -> int:
        """Damaged ranges and unknown files moved to the quarantine folder by this run."""
        return self._quarantined_files + self.reader.quarantined

    # -- start-up ----------------------------------------------------------------------------------
    def _start_position(self, watermark: Any) -> Pos:
        segs = self.journal.segments()
        mark: Pos | None = None
        if isinstance(watermark, list) and len(watermark) == 2 and all(isinstance(v, int) for v in watermark):
            mark = (watermark[0], watermark[1])
        if mark is not None:
            for seg in segs:
                if seg < mark[0] and seg < self.journal.first_new:
                    self.journal.delete(seg)  # fully resolved before the last stop
            segs = self.journal.segments()
            if segs and segs[0] == mark[0]:
                return (mark[0], max(mark[1], HEADER_LEN))
        return (segs[0], HEADER_LEN) if segs else (self.journal.first_new, HEADER_LEN)

    def _count_backlog(self) -> None:
        """Count the records earlier runs left, so accepted/pending are exact from the start.

        Runs on the writer thread before the first batch (never in the constructor). Damage is
        not reported here; the replay that follows quarantines it as it reads.
        """
        per_segment = backlog_counts(self.journal, self._pos, self._saved_counts, self._saved_first)
        for seg, valid in per_segment.items():
            self._expected[seg] = self._expected.get(seg, 0) + valid
        n = sum(per_segment.values())
        self.recovered += n
        with self._lock:
            self.accepted += n

    # -- hot path ----------------------------------------------------------------------------------
    def submit(self, kind: int, row: tuple[Any, ...]) -> None:
        """Accept one record. Never raises, never blocks on the database."""
        try:
            data, row = encode(kind, row)
        except Exception as exc:  # noqa: BLE001 - the fail-open promise outranks everything
            with self._lock:
                self.accepted += 1
                self.dropped["unencodable"] += 1
            self.warn.warning("encode", "dropped a record that could not be encoded: %s", exc)
            return
        with self._lock:
            self.accepted += 1
            if self.closed:
                self.dropped["closed"] += 1
                drop = "closed"
            else:
                try:
                    seg, start, end = self.journal.append(data)
                except DiskFull:
                    self.dropped["disk_full"] += 1
                    drop = "disk_full"
                except OSError as exc:
                    return self._journal_failed(kind, row, exc)
                else:
                    if self._idle:
                        self._idle = False
                        self._wake.set()  # only on the idle → busy transition, not per append
                    mem = self._mem
                    exp = self._expected
                    exp[seg] = exp.get(seg, 0) + 1
                    self._seq += 1
                    mem.append(Item(seg, start, end, kind, row, self._seq))
                    if len(mem) > self.cfg.max_in_memory:
                        mem.popleft()  # still on disk: the writer reads it back from its segment
                    return None
        if drop == "closed":
            self.warn.warning("closed", "record appended after close() was dropped")
        else:
            self.warn.warning("disk_full", "queue folder reached max_disk_mb=%s; record dropped", self.cfg.max_disk_mb)
        return None

    def _journal_failed(self, kind: int, row: tuple[Any, ...], exc: OSError) -> None:
        # Called with the lock held. The record can still reach the database from memory.
        if len(self._volatile) < self.cfg.max_in_memory:
            self._volatile.append(Item(-1, 0, 0, kind, row))
            if self._idle:
                self._idle = False
                self._wake.set()
        else:
            self.dropped["journal_error"] += 1
        self.warn.warning("journal", "journal write failed (%s); holding records in memory only", exc)

    # -- reads (L1) --------------------------------------------------------------------------------
    def pending_items(self) -> list[Item]:
        """Unresolved records held in memory, oldest first (for read-your-writes)."""
        with self._lock:
            items = list(self._volatile) + list(self._side.values()) + list(self._inflight) + list(self._mem)
        return items

    # -- writer thread -------------------------------------------------------------------------------
    def start(self) -> None:
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
        if self.cfg.fsync == "interval" and now - self.journal.last_sync >= self.cfg.fsync_interval_ms / 1000:
            self.journal.sync()
        self.journal.release_pages()
        if not self.breaker.allow(now):
            return self.breaker.retry_at - now
        if not self.dead.loaded:
            self.dead.load()
            self._count_backlog()
        if not self.initialized and not self.initialize(now):
            return max(self.breaker.retry_at - now, 0.001)
        worked = self._retry_side(now)
        if self._inflight or self._fill_inflight():
            worked = True
            if not self._write_inflight(now):
                return max(self.breaker.retry_at - now, 0.001)
        self._housekeeping()
        with self._progress:
            self._progress.notify_all()
        if worked:
            return 0.0
        return self._next_side_due(now)

    def _next_side_due(self, now: float) -> float:
        interval = self.cfg.flush_interval_ms / 1000
        with self._lock:
            due = min((it.next_at for it in self._side.values()), default=now + interval)
            quiet = (not self._mem and not self._side and not self._volatile and not self._state_dirty
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
        with self._lock:
            batch = list(self._volatile)[:size]
            mem = self._mem
            while mem and mem[0].pos < self._pos:
                mem.popleft()  # already written (a trim cut short); never let it stall the stream
            if mem and mem[0].pos == self._pos and len(batch) < size:
                n = min(size - len(batch), len(mem))
                taken = [mem[i] for i in range(n)]
                batch += taken
                next_pos: Pos | None = (taken[-1].seg, taken[-1].end) if taken else None
                self._inflight_mem_last = taken[-1].n if taken else -1
            else:
                next_pos = None
                self._inflight_mem_last = -1
            first_mem = mem[0].pos if mem else None
        if next_pos is None and len(batch) < size:
            read, next_pos = self._read_disk(first_mem, size - len(batch))
            batch += read
        self._inflight, self._inflight_next = batch, next_pos
        return bool(batch) or (next_pos is not None and next_pos != self._pos)

    def _read_disk(self, first_mem: Pos | None, room: int) -> tuple[list[Item], Pos | None]:
        before = self.reader.quarantined
        items, nxt = self.reader.read(self._pos, first_mem, min(room, self.cfg.spill_batch_size))
        if self.reader.quarantined != before:
            self._state_dirty = True  # lifetime counters changed: save them soon
        return items, nxt

    # -- writing ----------------------------------------------------------------------------------------
    def _attempt(self, items: list[Item]) -> tuple[str, Exception | None, list[Item]]:
        events = [it.row for it in items if it.kind == EVENT]
        turns = [it.row for it in items if it.kind == TURN]
        fins = [it for it in items if it.kind == FINISH]
        try:
            missing = self.store.write_batch(events, turns, [it.row for it in fins])
        except StoreUnavailable as exc:
            return "transient", exc, []
        except StoreRejected as exc:
            return "permanent", exc, []
        except Exception as exc:  # noqa: BLE001 - unknown: isolate rather than block everything
            return "permanent", exc, []
        return "ok", None, [fins[i] for i in missing]

    def _write_inflight(self, now: float) -> bool:
        """Write the in-flight batch. False on a transient failure (the batch is kept)."""
        todo = [it for it in self._inflight if not it.done]
        dead_keys = self.dead.keys
        if dead_keys:
            for it in todo:
                if it.key in dead_keys:  # dead-lettered by an earlier run: do not try it again
                    it.done = True
                    self.dead_lettered += 1
            todo = [it for it in todo if not it.done]
        if todo:
            status, exc, missing = self._attempt(todo)
            if status == "transient":
                return self._transient(todo, exc, now)
            if status == "permanent":
                try:
                    self._isolate(todo, exc, now)
                except _Interrupted:
                    return False
            else:
                self._committed(todo, missing, now)
        self.breaker.success()
        self._suspect = 0
        self._advance()
        return True

    def _transient(self, todo: list[Item], exc: Exception | None, now: float) -> bool:
        # A batch that keeps failing "transiently" against a database that answers a ping is
        # probably breaking the connection itself (e.g. a row over max_allowed_packet): isolate.
        self.initialized = False  # re-check the schema before the next write (file replaced, etc.)
        if getattr(exc, "row_suspect", False) and self.store.ping():
            self._suspect += 1
            if self._suspect >= 2:
                self._suspect = 0
                self.initialized = True
                try:
                    self._isolate(todo, exc, now)
                except _Interrupted:
                    return False
                self._advance()
                return True
        wait = self.breaker.failure(now, str(exc))
        self.warn.warning("db", "database write failed (%s); %d records waiting, retry in %.1fs",
                          exc, self.pending_count(), wait)
        return False

    def _isolate(self, items: list[Item], exc: Exception | None, now: float) -> None:
        """Split a rejected batch until each bad record stands alone; commit the rest."""
        if len(items) == 1:
            self._failed(items[0], exc, now, "rejected")
            return
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            status, err, missing = self._attempt(half)
            if status == "ok":
                self._committed(half, missing, now)
            elif status == "permanent":
                self._isolate(half, err, now)
            else:
                self.breaker.failure(now, str(err))
                raise _Interrupted

    def _committed(self, items: list[Item], missing: list[Item], now: float) -> None:
        miss = {id(it) for it in missing}
        n = 0
        for it in items:
            if id(it) in miss:
                self._failed(it, None, now, "turn not found")
            elif not it.done:
                it.done = True
                n += 1
        self.committed += n
        self._state_dirty = True

    def _failed(self, it: Item, exc: Exception | None, now: float, reason: str) -> None:
        text = f"{reason}: {exc}" if exc is not None else reason
        wall = self.wall()
        it.attempts += 1
        if not it.first_error:
            it.first_error, it.first_failed_at = text, wall
        it.last_error, it.last_failed_at = text, wall
        it.done = True  # resolved from the stream's point of view; the retry list owns it now
        if it.attempts >= self.cfg.max_retries:
            self._dead_letter(it, reason)
            return
        it.next_at = now + backoff(it.attempts, self.cfg.retry_base_delay_s, self.cfg.retry_max_delay_s)
        with self._lock:
            self._side[it.key] = it

    def _dead_letter(self, it: Item, reason: str) -> None:
        entry = {"kind": it.kind, "row": list(it.row), "reason": reason, "attempts": it.attempts,
                 "first_error": it.first_error, "last_error": it.last_error,
                 "first_failed_at": it.first_failed_at, "last_failed_at": it.last_failed_at,
                 "dead_at": self.wall()}
        try:
            outcome = self.dead.add(entry)
        except OSError as exc:
            it.next_at = self.clock() + self.cfg.retry_max_delay_s
            with self._lock:
                self._side[it.key] = it  # keep it: it may only leave the journal once it is safe
            self.warn.warning("deadletter", "cannot write the dead-letter file (%s); will retry", exc)
            return
        with self._lock:
            self._side.pop(it.key, None)
            if outcome == "full":
                self.dropped["dead_letter_full"] += 1
            else:
                self.dead_lettered += 1
        self._state_dirty = True
        log.warning("record %s dead-lettered after %d attempts: %s", it.key, it.attempts, it.last_error)

    def _retry_side(self, now: float) -> bool:
        with self._lock:
            due = [it for it in self._side.values() if it.next_at <= now]
        for it in due[: self.cfg.batch_size]:
            status, exc, missing = self._attempt([it])
            if status == "transient":
                self.breaker.failure(now, str(exc))
                return True
            with self._lock:
                self._side.pop(it.key, None)
            if status == "ok" and not missing:
                it.done = True
                self.committed += 1
                self._state_dirty = True
            else:
                self._failed(it, exc, now, "rejected" if status == "permanent" else "turn not found")
        return bool(due)

    def _advance(self) -> None:
        """The in-flight batch is resolved: move the read position and trim the memory window."""
        batch, nxt, last = self._inflight, self._inflight_next, self._inflight_mem_last
        self._inflight, self._inflight_next, self._inflight_mem_last = [], None, -1
        mem = self._mem
        with self._lock:
            if batch and batch[0].seg == -1:
                vol = self._volatile
                while vol and vol[0].done:
                    vol.popleft()
            if nxt is not None:
                self._pos = nxt
            todo = last - mem[0].n + 1 if mem and last >= 0 else 0
        self._count_seen(batch)
        # The batch's memory items are a prefix of the window (evictions also leave from the
        # left), so trimming is a count. Done in small locked steps so appends never wait long.
        pop = mem.popleft
        while todo > 0:
            with self._lock:
                step = min(todo, 512, len(mem))
                for _ in range(step):
                    pop()
            todo = todo - step if step else 0
        self._state_dirty = True

    def _count_seen(self, batch: list[Item]) -> None:
        seen = self._seen
        if batch and batch[0].seg == batch[-1].seg >= 0:
            seen[batch[0].seg] = seen.get(batch[0].seg, 0) + len(batch)  # the common case, O(1)
        else:
            for it in batch:
                if it.seg >= 0:
                    seen[it.seg] = seen.get(it.seg, 0) + 1
        with self._lock:  # submit() adds segments to _expected concurrently
            passed = [s for s in self._expected if s < self._pos[0]]
        for seg in passed:
            with self._lock:
                lost = self._expected.pop(seg, 0) - self._seen.pop(seg, 0)
                if lost > 0:
                    self.dropped["corrupt"] += lost
                    self._state_dirty = True
            if lost > 0:
                self.warn.warning("corrupt-loss", "%d records in queue segment %d were destroyed by corruption "
                                  "(quarantined)", lost, seg)

    # -- housekeeping ------------------------------------------------------------------------------------
    def watermark(self) -> Pos:
        """Oldest position not yet committed or dead-lettered; everything before it is resolved."""
        with self._lock:
            side = [it.pos for it in self._side.values() if it.seg >= 0]
            pos = self._pos
        return min([pos, *side])

    def _housekeeping(self, force: bool = False) -> None:
        # state.json only lets a restart skip what is already resolved, so saving it (and the
        # segment deletions that must follow a save) a few times a second is plenty.
        now = self.clock()
        if not self._state_dirty or (not force and now - self._last_save < 0.25):
            return
        self._last_save = now
        mark = self.watermark()
        self._save_state(mark)
        resolved = [s for s in self.journal.segments() if s < mark[0] and s != self.journal.active]
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
            for reason, n in self.dropped.items():
                dropped[reason] = int(dropped.get(reason, 0)) + n
        return {"committed": int(base.get("committed", 0)) + self.committed,
                "dead_lettered": int(base.get("dead_lettered", 0)) + self.dead_lettered,
                "quarantined": int(base.get("quarantined", 0)) + self.quarantined,
                "dropped": dropped, "runs": int(base.get("runs", 0)) + 1}

    def _save_state(self, mark: Pos) -> None:
        active = self.journal.active
        with self._lock:  # record counts of sealed, unresolved segments: a restart need not rescan them
            counts = {str(seg): n for seg, n in self._expected.items() if seg > mark[0] and seg != active}
            if mark == self._pos and mark[0] in self._expected and mark[0] != active:
                # The watermark's own segment: what is left past the watermark (nothing before it
                # is pending, and the stream took those records in order).
                counts[str(mark[0])] = self._expected[mark[0]] - self._seen.get(mark[0], 0)
        state = {"watermark": list(mark), "pid": os.getpid(), "saved_at": self.wall(),
                 "lifetime": self.lifetime_totals(), "counts": counts}
        try:
            atomic_write_json(self.slot.path / "state.json", state)
        except OSError as exc:
            self.warn.warning("state", "cannot save queue state (%s); a restart will replay more", exc)

    # -- flush / close / health ----------------------------------------------------------------------------
    def pending_count(self) -> int:
        with self._lock:
            return max(0, self.accepted - self.committed - self.dead_lettered - sum(self.dropped.values()))

    def drained(self, target: Pos) -> bool:
        with self._lock:
            if self._volatile or self._side or self._inflight:
                return False
            pos = self._pos
            mem_empty = not self._mem
        return pos >= target or (mem_empty and self._at_head(pos))

    def _at_head(self, pos: Pos) -> bool:
        active = self.journal.active
        return pos >= (active, self.journal.sizes.get(active, HEADER_LEN))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted before this call is committed or dead-lettered."""
        with self._lock:
            target: Pos = (self.journal.active, self.journal.sizes.get(self.journal.active, HEADER_LEN))
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
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, min(5.0, timeout or 5.0)))
        with contextlib.suppress(Exception):
            self._state_dirty = True
            self._housekeeping(force=True)
        self.journal.close()
        self.slot.release()
        return ok

    def check(self) -> list[str]:
        """Reconcile counters with what is really held; call when idle (after flush or close)."""
        return check(self)

    def stats(self) -> dict[str, Any]:
        return stats(self)


class _Interrupted(Exception):
    """A transient failure in the middle of isolating a batch; resume after backoff."""

