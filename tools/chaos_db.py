"""Database faults for the chaos run: the database goes down for seconds at a time, for real.

* SQLite: another connection holds an exclusive lock (``BEGIN EXCLUSIVE``), so every write of
  the service fails with "database is locked" until it is released.
* MariaDB: the service's DSN points at a :class:`tests.faultproxy.FaultProxy`; "down" is one of
  its modes (``refuse``: connections reset; ``blackhole``: nothing answers, so every query runs
  into its timeout; ``reset``: connections die in the middle of a query or its answer).

A :class:`Flapper` thread follows a seeded schedule of up and down stretches; the cycle loop
can also hold the database down for whole cycles (a long outage).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from chaos_plan import Stretch


class Fault(Protocol):
    def down(self, mode: str) -> bool: ...
    def up(self) -> None: ...


class SqliteLock:
    """Down = an exclusive transaction held on the database file by this (the harness) process."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def down(self, mode: str) -> bool:
        if self._conn is not None:
            return True
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=5, check_same_thread=False)
        try:
            conn.execute("BEGIN EXCLUSIVE")  # waits for a writer's transaction in progress to end
        except sqlite3.Error:
            conn.close()
            return False  # not this time (a writer held it for long): try again on the next tick
        self._conn = conn
        return True

    def up(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()


class ProxyFault:
    """Down = a fault mode of the TCP proxy the service's DSN goes through."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy

    def down(self, mode: str) -> bool:
        if self.proxy.mode != mode:
            self.proxy.set_mode(mode)
        return True

    def up(self) -> None:
        if self.proxy.mode != "forward":
            self.proxy.set_mode("forward")


class Flapper:
    """Drives a :class:`Fault` through up / down stretches on its own thread (the lock owner)."""

    def __init__(self, fault: Fault, schedule: list[Stretch], outage_mode: str) -> None:
        self.fault = fault
        self.schedule = schedule
        self.outage_mode = outage_mode
        self.hold_down = False  # set by the cycle loop for a long outage
        self.down_seconds = 0.0
        self.stretches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-flapper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        i = 0
        is_down = False
        since = time.monotonic()
        try:
            while not self._stop.is_set():
                stretch = self.schedule[i % len(self.schedule)]
                i += 1
                end = time.monotonic() + stretch.seconds
                while not self._stop.is_set() and time.monotonic() < end:
                    want_down = self.hold_down or not stretch.up
                    if want_down and not is_down:
                        if self.fault.down(self.outage_mode if self.hold_down else stretch.mode):
                            is_down, since = True, time.monotonic()
                            self.stretches += 1
                    elif not want_down and is_down:
                        self.fault.up()
                        is_down = False
                        self.down_seconds += time.monotonic() - since
                    time.sleep(0.02)
        finally:
            if is_down:
                self.down_seconds += time.monotonic() - since
            self.fault.up()

    def stop(self) -> None:
        """Stop flapping and leave the database up (waits for the lock to be released)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
