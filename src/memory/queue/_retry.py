"""Backoff and the circuit breaker that keep an outage from costing anyone a timeout per batch."""

from __future__ import annotations

import random
from collections.abc import Callable


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
