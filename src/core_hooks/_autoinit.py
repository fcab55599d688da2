"""Bounded auto-init: a core asks for memory by config path and always gets an answer in time.

Construction runs on its own daemon thread, handed over to the caller through :class:`_Handoff`.
If the caller stops waiting, the hand-off is marked abandoned under its lock; whatever the
constructor returns after that point is closed by the construction thread itself, the moment
it exists (slot released, threads stopped, exit hook unregistered). A daemon thread — not a
``ThreadPoolExecutor``, whose workers the interpreter joins at exit — means a constructor that
never returns cannot hold the core's process at exit either.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from ._pool import valid_timeout

if TYPE_CHECKING:
    from memory import MemoryAPI

log = logging.getLogger("core_hooks")
_reported: set[str] = set()
_reported_lock = threading.Lock()
CLOSE_TIMEOUT = 2.0  # an abandoned service accepted no records: closing it has nothing to flush


def _log_once(key: str, msg: str, *args: Any) -> None:
    with _reported_lock:
        first = key not in _reported
        _reported.add(key)
    if first:
        log.error(msg, *args)


class _Handoff:
    """The construction thread's result, claimed by the caller or — once abandoned — by nobody."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.service: Any = None
        self.error: BaseException | None = None

    def deliver(self, service: Any, error: BaseException | None) -> bool:
        """Hand the result over; False if the caller has gone (the service is then the thread's to close)."""
        with self.lock:
            if self.abandoned:
                return False
            self.service, self.error = service, error
            self.done.set()
            return True

    def wait(self, timeout: float) -> bool:
        """True if a result arrived in time; otherwise the hand-off is abandoned, atomically."""
        self.done.wait(timeout)
        with self.lock:
            if not self.done.is_set():
                self.abandoned = True
            return self.done.is_set()


def _construct(build: Any, path: str | os.PathLike[str], handoff: _Handoff, timeout: float) -> None:
    service: Any = None
    error: BaseException | None = None
    try:
        service = build(path)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides what to log
        error = exc
    if handoff.deliver(service, error) or service is None:
        return
    # Nobody will ever use this service: release everything it holds now, not at interpreter exit.
    try:
        service.close(timeout=CLOSE_TIMEOUT)
        log.warning("memory: closed the memory service that was built after the %.1fs timeout expired "
                    "(the core runs without memory)", timeout)
    except Exception as exc:  # noqa: BLE001
        log.error("memory: could not close the memory service built after the timeout: %s: %s",
                  type(exc).__name__, exc)


def auto_init(enable_memory: bool = True, memory_config_path: str | os.PathLike[str] = "config/memory.yaml",
              timeout: float = 5.0) -> MemoryAPI | None:
    """Build the memory service from ``memory_config_path`` within ``timeout`` seconds.

    * ``enable_memory=False`` → None (memory off, by the core's choice).
    * ``MEMORY_ENABLED=0`` → the disabled no-op service (ids, no I/O; health says disabled).
    * Database unreachable → a working, *degraded* service: construction never waits on the
      database, records wait in the local queue and are written when it returns.
    * Invalid config, a ``memory`` package that cannot be imported, a construction that fails
      or takes longer than ``timeout`` → None, with the reason logged once. A construction that
      finishes after the timeout is closed at once; one that never finishes holds nothing the
      interpreter waits for at exit.
    * ``timeout`` must be a positive, finite number of seconds; anything else is logged as an
      error and yields None without trying (an unbounded wait is never the answer).
    """
    if not enable_memory:
        return None
    seconds = valid_timeout(timeout)
    if seconds is None:
        log.error("memory disabled: auto_init timeout must be a positive number of seconds, got %r", timeout)
        return None
    try:
        from memory import ConfigError, MemoryService
    except Exception as exc:  # noqa: BLE001 - a broken install must not stop the core from starting
        _log_once(f"import:{exc}", "memory disabled: cannot import the memory package: %s: %s",
                  type(exc).__name__, exc)
        return None

    handoff = _Handoff()
    thread = threading.Thread(target=_construct, args=(MemoryService.from_config, memory_config_path, handoff, seconds),
                              name="memory-init", daemon=True)
    thread.start()
    if not handoff.wait(seconds):
        log.error("memory disabled: building the service took longer than %.1fs", seconds)
        return None
    error = handoff.error
    if error is None:
        return handoff.service  # type: ignore[no-any-return]
    if isinstance(error, ConfigError):
        _log_once(str(error), "memory disabled: invalid configuration: %s", error)
    else:  # even SystemExit from inside the constructor: signals reach the main thread, never this one
        log.error("memory disabled: cannot start the memory service: %s: %s", type(error).__name__, error)
    return None
