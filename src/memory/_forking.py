"""What ``os.fork()`` does to live services: the child gets its own, the parent is unaffected.

A forked child inherits the parent's memory map of its live journal segment, its slot lock,
its pooled database connections and locks that threads which do not exist in the child may
hold. Left alone, parent and child would append at the same offset of the same segment, the
child's exit would truncate the parent's segment under it (SIGBUS in the parent), and the
child could deadlock on a lock taken mid-append.

So, in the child, right after the fork, every live service *abandons* what it inherited without
touching a file (unmap, close descriptors, drop pooled connections without closing them) and
is marked for rebuilding; the rebuild — its own slot, journal, writer, vault watcher — happens
on the child's first call, not in the fork hook itself: a process that forks only to ``exec``
(``subprocess`` with ``preexec_fn``) never starts a thread or claims a slot. Records the
parent had pending stay the parent's to write; the child never sees them as its own.

This module keeps the one process-wide registry a fork hook needs (a ``WeakSet``, so it never
keeps a service alive) and registers the hook once at import.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Protocol

log = logging.getLogger("memory.service")


class _Forkable(Protocol):
    def _before_fork(self) -> None: ...

    def _after_fork_in_parent(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[_Forkable] = weakref.WeakSet()
_registry_lock = threading.Lock()


def track(service: _Forkable) -> None:
    """Have ``service`` rebuilt in forked children."""
    with _registry_lock:
        _live.add(service)


def untrack(service: _Forkable) -> None:
    with _registry_lock:
        _live.discard(service)


def _before_fork() -> None:
    for service in list(_live):
        try:
            service._before_fork()
        except Exception:  # noqa: BLE001
            log.exception("memory: preparing a service for fork failed")


def _after_fork_in_parent() -> None:
    for service in list(_live):
        try:
            service._after_fork_in_parent()
        except Exception:  # noqa: BLE001
            log.exception("memory: resuming a service after fork failed")


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # may have been held by another thread at fork time
    for service in list(_live):
        try:
            service._after_fork_in_child()
        except Exception:  # noqa: BLE001 - a fork hook that raises would break the caller's fork
            log.exception("memory: could not detach a service after fork; it will be rebuilt on first use")


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
