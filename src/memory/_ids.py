"""Client-side, globally unique, time-ordered ids.

An id is 26 lowercase hex characters: 16 for a per-process strictly increasing microsecond
clock (``max(now_us, last + 1)``), then 10 for a random node number drawn once per process
(and again after ``fork``). Ids therefore sort lexicographically by creation time across
threads of a process, and by microsecond across processes; two processes collide only if
they draw the same 40-bit node *and* the same microsecond (about 1 in 10^12).
"""

from __future__ import annotations

import os
import threading
import time


class IdGenerator:
    """Thread-safe generator of time-ordered ids. One per service; no global state."""

    __slots__ = ("_lock", "_last", "_node", "_pid")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._pid = -1
        self._node = ""

    def _reseed(self) -> None:
        self._pid = os.getpid()
        self._node = os.urandom(5).hex()

    def new_id(self) -> str:
        with self._lock:
            if self._pid != os.getpid():  # fork: a child must not reuse the parent's node
                self._reseed()
            now = time.time_ns() // 1000
            last = self._last + 1
            self._last = now if now > last else last
            return f"{self._last:016x}{self._node}"


def id_timestamp(record_id: str) -> float:
    """Epoch seconds encoded in an id (microsecond resolution)."""
    return int(record_id[:16], 16) / 1_000_000
