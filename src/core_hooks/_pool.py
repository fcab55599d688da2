"""A small bounded worker pool for the hooks: a hung memory side costs a bounded amount, forever.

Why not ``concurrent.futures.ThreadPoolExecutor``: its queue is unbounded (with every worker
stuck on a hung call, each later call waits out its timeout and leaves one more closure queued
behind them), and the interpreter joins its worker threads at exit, so one call that never
returns keeps the core's process alive after ``main`` ends. Here:

* workers are **daemon** threads the interpreter never joins, started on demand up to ``workers``;
* the queue holds at most ``queue_limit`` calls; what cannot be admitted fails at once with
  :class:`Dropped` and is counted by reason (see :func:`admit`);
* a caller that stops waiting cancels its call if it has not started yet (counted ``abandoned``).

Every call is accounted for at all times::

    submitted = completed + failed + abandoned + dropped + queued + running
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Why a call was not admitted.
CLOSED = "closed"  # the pool was shut down
STUCK = "stuck"  # every worker is held by a call that already outlived the hooks' timeout
QUEUE_FULL = "queue_full"  # queue_limit calls are already waiting


def valid_timeout(timeout: object) -> float | None:
    """The timeout in seconds, or None if it cannot bound a wait (None, <= 0, NaN, inf, not a number)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        return None
    value = float(timeout)
    return value if math.isfinite(value) and value > 0 else None


class Dropped(Exception):
    """The call was not run: the pool refused it (``reason`` is one of the constants above)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Admission:
    accept: bool
    reason: str | None = None


def admit(*, closed: bool, free: int, busy_ages: Sequence[float], workers: int, queued: int, queue_limit: int,
          stuck_after: float) -> Admission:
    """Whether a new call may enter the pool. Pure: the pool passes a snapshot taken under its lock.

    ``free`` is idle workers plus workers not started yet; ``busy_ages`` how long each running
    call has been running.
    """
    if closed:
        return Admission(False, CLOSED)
    if free > queued:
        return Admission(True)  # a worker takes it now (an idle one, or a new one)
    if len(busy_ages) >= workers and min(busy_ages) >= stuck_after:
        # Every worker is already past the caller's timeout on an earlier call: a queued call
        # could only wait out its own timeout too. Refusing at once keeps the core fast while
        # memory hangs (one timeout per worker in total, not one per call).
        return Admission(False, STUCK)
    if queued >= queue_limit:
        return Admission(False, QUEUE_FULL)
    return Admission(True)


@dataclasses.dataclass
class _Job:
    future: concurrent.futures.Future[Any]
    fn: Callable[[], Any]


class BoundedPool:
    """Up to ``workers`` daemon threads behind a queue of at most ``queue_limit`` calls."""

    def __init__(self, *, workers: int = 4, queue_limit: int = 32, stuck_after: float = 1.0,
                 name: str = "memory-hook", clock: Callable[[], float] = time.monotonic) -> None:
        if workers < 1 or queue_limit < 0:
            raise ValueError(f"workers must be >= 1 and queue_limit >= 0, got {workers} and {queue_limit}")
        self.workers, self.queue_limit, self.stuck_after = workers, queue_limit, stuck_after
        self.name, self.clock = name, clock
        self._cv = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._started: dict[int, float] = {}  # worker ident -> when its current call started
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self.submitted = self.completed = self.failed = self.abandoned = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a forked child the workers do not exist (and the lock may be held by one of them):
        start afresh. Calls queued in the parent are the parent's."""
        self._pid = os.getpid()
        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._started, self._threads, self._idle = {}, [], 0

    # -- the caller's side ----------------------------------------------------------------------------
    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """A future for ``fn()``; one already failed with :class:`Dropped` if the call was refused."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._pid != os.getpid():
            self._after_fork()
        with self._cv:
            self.submitted += 1
            self._purge_cancelled()
            now = self.clock()
            verdict = admit(closed=self._closed, free=self._idle + self.workers - len(self._threads),
                            busy_ages=[now - t for t in self._started.values()],
                            workers=self.workers, queued=len(self._queue), queue_limit=self.queue_limit,
                            stuck_after=self.stuck_after)
            if not verdict.accept:
                self.dropped[verdict.reason or "refused"] += 1
            else:
                self._queue.append(_Job(fut, fn))
                if self._idle >= len(self._queue):
                    self._cv.notify()
                else:
                    self._spawn()
        if not verdict.accept:
            fut.set_exception(Dropped(verdict.reason or "refused"))
        return fut

    def _purge_cancelled(self) -> None:
        # Called with the lock held: calls whose caller gave up before they started never run.
        if any(j.future.cancelled() for j in self._queue):
            kept = collections.deque(j for j in self._queue if not j.future.cancelled())
            self.abandoned += len(self._queue) - len(kept)
            self._queue = kept

    def _spawn(self) -> None:
        if len(self._threads) >= self.workers:
            return
        t = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    # -- the worker's side ----------------------------------------------------------------------------
    def _next(self, me: int) -> _Job | None:
        with self._cv:
            while True:
                self._idle += 1
                while not self._queue and not self._closed:
                    self._cv.wait()
                self._idle -= 1
                if not self._queue:
                    self._threads.remove(threading.current_thread())
                    return None  # closed and nothing left
                job = self._queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    self._started[me] = self.clock()
                    return job
                self.abandoned += 1

    def _work(self) -> None:
        me = threading.get_ident()
        while (job := self._next(me)) is not None:
            try:
                result = job.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                with self._cv:
                    self.failed += 1
                    del self._started[me]
                job.future.set_exception(exc)
            else:
                with self._cv:
                    self.completed += 1
                    del self._started[me]
                job.future.set_result(result)
            del job

    # -- lifecycle -----------------------------------------------------------------------------------
    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; gives up early once every worker is stuck."""
        deadline = self.clock() + timeout
        while True:
            with self._cv:
                self._purge_cancelled()
                ages = [self.clock() - t for t in self._started.values()]
                if not self._queue and not ages:
                    return True
                stuck = len(ages) >= self.workers and min(ages) >= self.stuck_after
            if stuck or self.clock() >= deadline:
                return False
            time.sleep(0.01)

    def shutdown(self) -> None:
        """Refuse new calls, cancel queued ones, let idle workers end. Never waits on a running call."""
        with self._cv:
            self._closed = True
            for job in self._queue:
                job.future.cancel()
            self._purge_cancelled()
            self._cv.notify_all()

    def stats(self) -> dict[str, Any]:
        with self._cv:
            self._purge_cancelled()
            now = self.clock()
            ages = [now - t for t in self._started.values()]
            return {"workers": self.workers, "threads": len(self._threads), "running": len(ages),
                    "stuck": sum(a >= self.stuck_after for a in ages), "queued": len(self._queue),
                    "queue_limit": self.queue_limit, "submitted": self.submitted, "completed": self.completed,
                    "failed": self.failed, "abandoned": self.abandoned, "dropped": dict(self.dropped),
                    "closed": self._closed}


def run_detached(fn: Callable[[], T], name: str) -> concurrent.futures.Future[T]:
    """Run ``fn`` on its own daemon thread: a hung ``fn`` never holds the interpreter at exit."""
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def main() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
            fut.set_exception(exc)

    threading.Thread(target=main, name=name, daemon=True).start()
    return fut
