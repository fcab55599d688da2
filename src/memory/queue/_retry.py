"""Backoff and the circuit breaker that keep an outage from costing anyone a timeout per batch."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from ._item import Item


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with full jitter: uniform in [delay/2, delay]."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (0.5 + rand() / 2)


class Breaker:
    """Counts consecutive transient failures.

    * closed: calls go through;
    * open (``failures >= threshold``): nobody calls the database until ``retry_at`` — the
      writer sleeps, reads answer from memory only — then one probe (half-open) decides.
    Even below the threshold each failure waits its backoff, so a flapping database is never
    hammered.
    """

    def __init__(self, threshold: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> None:
        self.threshold, self.base, self.cap, self._rand = threshold, base, cap, rand
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.opened = 0  # how many times it has opened (for health)

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def allow(self, now: float) -> bool:
        return now >= self.retry_at

    def success(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def failure(self, now: float, error: str) -> float:
        self.failures += 1
        if self.failures == self.threshold:
            self.opened += 1
        self.last_error = error
        wait = backoff(self.failures, self.base, self.cap, self._rand)
        self.retry_at = now + wait
        return wait


class RetryList:
    """Records the database rejected, each waiting for its own backoff (keyed by record identity).

    Shared with readers (read-your-writes) and the watermark, so every method takes ``lock``.
    A record here is resolved from the stream's point of view; its journal position still holds
    the watermark back, so its segment is never deleted while it waits.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._items: dict[str, Item] = {}

    def relock(self, lock: threading.Lock) -> None:
        """Share a new lock (a forked child replaces one a vanished thread may hold)."""
        self._lock = lock

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def put(self, item: Item) -> None:
        with self._lock:
            self._items[item.key] = item

    def remove(self, item: Item) -> None:
        with self._lock:
            self._items.pop(item.key, None)

    def due(self, now: float, limit: int) -> list[Item]:
        with self._lock:
            due = [it for it in self._items.values() if it.next_at <= now]
        due.sort(key=lambda it: it.next_at)
        return due[:limit]

    def next_due(self) -> float | None:
        with self._lock:
            return min((it.next_at for it in self._items.values()), default=None)

    def items(self) -> list[Item]:
        with self._lock:
            return list(self._items.values())

    def positions(self) -> list[tuple[int, int]]:
        """Journal positions still held (memory-only records have none)."""
        with self._lock:
            return [it.pos for it in self._items.values() if it.seg >= 0]
