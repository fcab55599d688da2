"""The ``fsync: interval`` thread: the journal's power-loss bound, independent of the database.

The writer may sleep out a 30 s breaker backoff or sit in a 30 s read timeout; if it were the
one syncing, a power cut during an outage could lose that much. This thread syncs at most
``interval`` after the first unsynced append, whatever the writer is doing, and sleeps without
polling while nothing is appended (the journal pokes it on its clean → dirty transition).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ._journal import Journal

log = logging.getLogger("memory.queue")


class JournalSyncer:
    """initialize / loop_once / shutdown around :meth:`Journal.sync`."""

    def __init__(self, journal: Journal, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.journal, self.interval, self.clock = journal, max(0.001, interval_s), clock
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.syncs = 0

    def initialize(self) -> None:
        self.journal.on_dirty = self._event.set

    def loop_once(self, now: float) -> float:
        """Sync if due. Returns seconds to wait (negative: idle until the next dirty append)."""
        if not self.journal.dirty:
            return -1.0
        due = self.journal.last_sync + self.interval
        if now < due:
            return due - now
        self.journal.sync()
        self.syncs += 1
        return -1.0 if not self.journal.dirty else self.interval

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.loop_once(self.clock())
            except Exception:  # noqa: BLE001 - a sync failure must not end the thread
                log.exception("journal sync failed; retrying")
                wait = self.interval
            if wait < 0:
                self._event.wait()
                self._event.clear()
            elif wait > 0:
                self._stop.wait(wait)

    def start(self) -> None:
        self.initialize()
        self._thread = threading.Thread(target=self._run, name="memory-fsync", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._event.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.journal.on_dirty = None
