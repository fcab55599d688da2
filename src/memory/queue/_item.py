"""A record in flight, and rate-limited warnings (shared by the writer and the service)."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from ._deadletter import record_key

Pos = tuple[int, int]


class Item:
    """One record in flight. Mutable on purpose: the writer tracks attempts on it."""

    __slots__ = ("seg", "off", "end", "kind", "row", "n", "done", "attempts", "first_error", "last_error",
                 "first_failed_at", "last_failed_at", "next_at")

    def __init__(self, seg: int, off: int, end: int, kind: int, row: tuple[Any, ...], n: int = -1) -> None:
        self.seg, self.off, self.end, self.kind, self.row, self.n = seg, off, end, kind, row, n
        self.done = False
        self.attempts = 0
        self.first_error = self.last_error = ""
        self.first_failed_at = self.last_failed_at = 0.0
        self.next_at = 0.0

    @property
    def pos(self) -> Pos:
        return (self.seg, self.off)

    @property
    def key(self) -> str:
        return record_key(self.kind, self.row)


class RateLimitedLog:
    """WARNING lines at most once per ``interval`` per key, with a count of what was suppressed."""

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float]) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter[str] = collections.Counter()

    def warning(self, key: str, msg: str, *args: Any) -> None:
        now = self.clock()
        if now - self._last.get(key, -1e18) < self.interval:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        extra = self._suppressed.pop(key, 0)
        self.logger.warning(msg + (f" ({extra} similar suppressed)" if extra else ""), *args)
