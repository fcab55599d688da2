"""``DecayScheduler``: runs decay every ``interval``, in one process at a time across hosts.

The loop is ``initialize / loop_once / shutdown`` (the thread around it, ``start`` / ``stop``, is
``memory._loop.LoopThread``),
with an injected monotonic ``clock`` (when to look again) and ``wall`` time (the lease, shared
by every process through the database, compares wall-clock seconds).

Who runs: the lease row ``decay_lease('decay')``. ``loop_once``, when due, tries one UPDATE that
takes the row if it expired (or is already ours) *and* no run finished within the interval; the
row count says whether this process won. The winner renews the lease between batches (a run
longer than ``lease_ttl`` keeps it) and, when done, records the run's time and summary and gives
the lease up. A holder that dies (SIGKILL, power) simply stops renewing: after ``lease_ttl``
another process takes over. Losers look again when the next run is due by the recorded time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from .._loop import LoopThread

if TYPE_CHECKING:
    from ._plugin import Decay
    from ._policy import DecayReport

log = logging.getLogger("memory.decay")
LEASE = "decay"
RETRY_S = 60.0  # after a failure or a lost race with no recorded run: look again this soon
FIRST_RETRY_S = 1.0  # after a first failure (doubling up to RETRY_S): a service starting up creates
# the schema on its writer thread while this one starts, and a run before that fails once
SLACK = 0.99  # a run recorded a hair less than an interval ago still counts as due


class DecayScheduler:
    """Runs ``decay.run()`` every ``interval_s`` (default: the config's) under the database lease."""

    def __init__(self, decay: Decay, *, interval_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, holder: str | None = None) -> None:
        from ._plugin import _holder_id

        self.decay = decay
        self.interval_s = float(interval_s if interval_s is not None else decay.config.interval_s)
        self.clock, self.wall = clock, wall
        self.holder = holder or _holder_id()
        self.runs = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_report: DecayReport | None = None
        self.failures = 0  # in a row
        self._next: float | None = None
        self._loop = LoopThread("memory-decay", self._step, self._failed)
        self._stop = self._loop.stopping  # a run in progress ends at its next step once it is set

    # -- the loop --------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Due at once: the lease decides whether a run recorded by any process makes it early."""
        self._next = self.clock()

    def due_in(self) -> float:
        if self._next is None:
            self.initialize()
        assert self._next is not None
        return max(0.0, self._next - self.clock())

    def next_run_wall(self) -> float:
        """When this process looks next, in wall-clock seconds."""
        return self.wall() + self.due_in()

    def loop_once(self) -> DecayReport | None:
        """Run decay if due and this process wins the lease; returns the report, else None.
        Raises StoreError (the thread counts it and retries later)."""
        if self.due_in() > 0 or self._stop.is_set():
            return None
        try:
            report = self.decay.run_leased(self.holder, min_interval=self.interval_s * SLACK, wall=self.wall,
                                           stop=self._stop.is_set)
        except BaseException:
            self.failures += 1  # a failed run is due again soon, later after each further failure
            retry = min(RETRY_S, FIRST_RETRY_S * 2 ** min(self.failures - 1, 16))
            self._next = self.clock() + min(retry, self.interval_s)
            raise
        self.failures = 0
        if report is None:
            self._next = self.clock() + self._wait_after_loss()
            return None
        self._next = self.clock() + self.interval_s
        self.runs += 1
        self.last_report = report
        return report

    def _wait_after_loss(self) -> float:
        """Until the recorded last run plus an interval; soon if someone holds it without a record."""
        try:
            lease = self.decay.store.lease(LEASE)
        except StoreError:
            return min(RETRY_S, self.interval_s)
        now = self.wall()
        if lease is not None and lease.last_run_at is not None and lease.last_run_at + self.interval_s > now:
            return max(1.0, lease.last_run_at + self.interval_s - now)
        if lease is not None and lease.expires_at > now:
            return max(1.0, min(self.interval_s, lease.expires_at - now + 1.0))
        return min(RETRY_S, self.interval_s)

    def shutdown(self) -> None:
        """Stop looping; a run in progress stops at its next batch (its lease lapses or is released)."""
        self._stop.set()

    # -- the thread ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._loop.running:
            self.initialize()
            self._loop.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._loop.stop(timeout)

    @property
    def running(self) -> bool:
        return self._loop.running

    def stats(self) -> dict[str, Any]:
        return {"runs": self.runs, "errors": self.errors, "last_error": self.last_error, "holder": self.holder,
                "running": self.running}

    def _pause(self) -> float:
        return min(max(self.due_in(), 0.05), 300.0)

    def _step(self) -> float:
        self.loop_once()
        return self._pause()

    def _failed(self, exc: Exception) -> float:
        """The loop's error handler: count, look again soon, log what is not a database outage."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"  # (loop_once has set when to try again)
        if not isinstance(exc, StoreError):
            log.warning("decay: run failed: %s", exc)
        return self._pause()
