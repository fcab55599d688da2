"""Writing one batch and deciding each record's fate: committed, retried later, or dead-lettered.

The stream (read position, memory window, segments) belongs to the writer in :mod:`._writer`;
this module owns only the row-level failure policy:

* a transient failure (the database is away) keeps the whole batch and waits behind the breaker;
  it never counts against ``max_retries`` — an hour-long outage must not turn an hour of
  records into dead letters;
* a rejected batch is bisected until each bad record stands alone; the good rows commit at once;
* a batch that keeps breaking a connection the database otherwise answers (a row over
  ``max_allowed_packet``, say) is treated as rejected after the second time;
* a bad record waits on the retry list with its own backoff, and after ``max_retries`` failures
  caused by the row itself goes to the dead-letter file with its reason and timestamps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .._config import FailureQueueConfig
from .._errors import StoreRejected, StoreUnavailable
from .._records import EDGE, EVENT, FINISH, TOUCH, TURN
from ..store import Store
from ._accounting import Ledger
from ._deadletter import DeadLetter
from ._item import Item, RateLimitedLog
from ._retry import Breaker, RetryList, backoff

log = logging.getLogger("memory.queue")

RESOLVED, KEPT, KEPT_TRANSIENT = "resolved", "kept", "kept-transient"


class _Interrupted(Exception):
    """A transient failure in the middle of isolating a batch; resume after backoff."""


class BatchWriter:
    """Writes batches through the store and settles every record of them."""

    def __init__(self, cfg: FailureQueueConfig, store: Store, ledger: Ledger, retry: RetryList, dead: DeadLetter,
                 breaker: Breaker, lock: threading.Lock, clock: Callable[[], float], wall: Callable[[], float],
                 warn: RateLimitedLog, backlog: Callable[[], bool]) -> None:
        self.cfg, self.store, self.ledger, self.retry, self.dead = cfg, store, ledger, retry, dead
        self.breaker, self.lock, self.clock, self.wall, self.warn = breaker, lock, clock, wall, warn
        self.backlog = backlog  # True while older records still wait in the stream
        self.suspect = 0
        self.changed = False  # counters changed since the queue last saved its state

    def attempt(self, items: list[Item]) -> tuple[str, Exception | None, list[Item]]:
        events = [it.row for it in items if it.kind == EVENT]
        turns = [it.row for it in items if it.kind == TURN]
        fins = [it for it in items if it.kind == FINISH]
        # Edges in journal order (an item's removal must follow the additions made before it).
        edges = [it.row for it in items if it.kind == EDGE]
        touches = [it.row for it in items if it.kind == TOUCH]
        try:
            missing = self.store.write_batch(events, turns, [it.row for it in fins], edges=edges, touches=touches)
        except StoreUnavailable as exc:
            return "transient", exc, []
        except StoreRejected as exc:
            return "permanent", exc, []
        except Exception as exc:  # noqa: BLE001 - unknown: isolate rather than block everything
            return "permanent", exc, []
        return "ok", None, [fins[i] for i in missing]

    def write(self, todo: list[Item], now: float) -> str:
        """Write ``todo``: RESOLVED (every record settled), KEPT or KEPT_TRANSIENT (retry the batch)."""
        status, exc, missing = self.attempt(todo)
        if status == "transient":
            return self._transient(todo, exc, now)
        if status == "permanent":
            try:
                self._isolate(todo, exc, now)
            except _Interrupted:
                return KEPT
        else:
            self.committed(todo, missing, now)
        self.breaker.success()
        self.suspect = 0
        return RESOLVED

    def _transient(self, todo: list[Item], exc: Exception | None, now: float) -> str:
        # A batch that keeps failing "transiently" against a database that answers a ping is
        # probably breaking the connection itself (e.g. a row over max_allowed_packet): isolate.
        if getattr(exc, "row_suspect", False) and self.store.ping():
            self.suspect += 1
            if self.suspect >= 2:
                self.suspect = 0
                try:
                    self._isolate(todo, exc, now)
                except _Interrupted:
                    return KEPT_TRANSIENT
                return RESOLVED
        wait = self.breaker.failure(now, str(exc))
        self.warn.warning("db", "database write failed (%s); %d records waiting, retry in %.1fs",
                          exc, self.ledger.pending(), wait)
        return KEPT_TRANSIENT

    def _isolate(self, items: list[Item], exc: Exception | None, now: float) -> None:
        """Split a rejected batch until each bad record stands alone; commit the rest."""
        if len(items) == 1:
            self.failed(items[0], exc, now, "rejected")
            return
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            status, err, missing = self.attempt(half)
            if status == "ok":
                self.committed(half, missing, now)
            elif status == "permanent":
                self._isolate(half, err, now)
            else:
                self.breaker.failure(now, str(err))
                raise _Interrupted

    def committed(self, items: list[Item], missing: list[Item], now: float) -> None:
        miss = {id(it) for it in missing}
        n = 0
        for it in items:
            if id(it) in miss:
                self.failed(it, None, now, "turn not found")
            elif not it.done:
                it.done = True
                n += 1
        with self.lock:
            self.ledger.committed += n
        self.changed = True

    def failed(self, it: Item, exc: Exception | None, now: float, reason: str) -> None:
        text = f"{reason}: {exc}" if exc is not None else reason
        wall = self.wall()
        # A finish whose turn is not in the database yet, while older records still wait in the
        # journal (a backlog being replayed, records held in memory at the disk bound), has not
        # failed: its turn is probably among them. Only a drained stream makes it count.
        if reason != "turn not found" or not self.backlog():
            it.attempts += 1
        if not it.first_error:
            it.first_error, it.first_failed_at = text, wall
        it.last_error, it.last_failed_at = text, wall
        it.done = True  # resolved from the stream's point of view; the retry list owns it now
        if it.attempts >= self.cfg.max_retries:
            self.dead_letter(it, reason)
            return
        it.next_at = now + backoff(max(1, it.attempts), self.cfg.retry_base_delay_s, self.cfg.retry_max_delay_s)
        self.retry.put(it)

    def dead_letter(self, it: Item, reason: str) -> None:
        entry = {"kind": it.kind, "row": list(it.row), "reason": reason, "attempts": it.attempts,
                 "first_error": it.first_error, "last_error": it.last_error,
                 "first_failed_at": it.first_failed_at, "last_failed_at": it.last_failed_at,
                 "dead_at": self.wall()}
        try:
            outcome = self.dead.add(entry)
        except OSError as exc:
            it.next_at = self.clock() + self.cfg.retry_max_delay_s
            self.retry.put(it)  # keep it: it may only leave the journal once it is safe
            self.warn.warning("deadletter", "cannot write the dead-letter file (%s); will retry", exc)
            return
        self.retry.remove(it)
        with self.lock:
            if outcome == "full":
                self.ledger.dropped["dead_letter_full"] += 1
            else:
                self.ledger.dead_lettered += 1
        self.changed = True
        log.warning("record %s dead-lettered after %d attempts: %s", it.key, it.attempts, it.last_error)

    def retry_due(self, now: float) -> bool:
        """Retry the records whose backoff has passed, one at a time. True if any was due."""
        due = self.retry.due(now, self.cfg.batch_size)
        for it in due:
            status, exc, missing = self.attempt([it])
            if status == "transient":
                self.breaker.failure(now, str(exc))
                return True
            self.retry.remove(it)
            if status == "ok" and not missing:
                it.done = True
                with self.lock:
                    self.ledger.committed += 1
                self.changed = True
            else:
                self.failed(it, exc, now, "rejected" if status == "permanent" else "turn not found")
        return bool(due)

    def relock(self, lock: threading.Lock) -> None:
        self.lock = lock
