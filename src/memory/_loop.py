"""``LoopThread``: the daemon thread around a background loop (``initialize / loop_once / shutdown``).

The plug-ins' background work (decay's scheduler; the recall indexer has the same shape) keeps its
logic in steps that tests drive by hand; this class is only the thread around them:

* ``step()`` runs over and over and returns how long to wait before the next one (0: at once);
  the wait ends early when the loop is stopped.
* **Nothing escapes the thread.** An exception of a step goes to ``on_error(exc)``, which counts
  it and returns the wait before trying again; should ``on_error`` itself fail, the loop logs it
  and waits ``ERROR_WAIT_S``.
* ``stop(timeout)`` sets ``stopping`` (a step in progress may look at it to end early) and joins
  the thread within ``timeout``; from the thread itself it only sets the event. Start and stop
  are idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("memory")

ERROR_WAIT_S = 1.0


class LoopThread:
    """A named daemon thread calling ``step`` until stopped."""

    def __init__(self, name: str, step: Callable[[], float], on_error: Callable[[Exception], float]) -> None:
        self.name = name
        self._step, self._on_error = step, on_error
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and not self.stopping.is_set():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Ask the loop to stop (without waiting for it)."""
        self.stopping.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        self.shutdown()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                wait = self._step()
            except Exception as exc:  # noqa: BLE001 - a background loop must outlive any failure
                try:
                    wait = self._on_error(exc)
                except Exception as inner:  # noqa: BLE001
                    log.warning("%s: error handler failed: %s", self.name, inner)
                    wait = ERROR_WAIT_S
            if wait > 0:
                self.stopping.wait(wait)
