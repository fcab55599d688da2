"""The plug-in contract: what the recall index, the graph and decay are to :class:`MemoryService`.

A plug-in is one object the service builds from its config section and holds by name
(``service.recall_index``, ``service.graph``, ``service.decay``). To add one, write a class with
the three methods of :class:`Plugin`, build it in ``MemoryService._build`` after the store and the
queue exist, and add it to the service's plug-in list; everything else below is how the existing
ones keep the service's promise, and a new one must keep it the same way.

**The rules**

1. *Fed from committed data.* A plug-in reads what the writer committed (rows, an outbox written
   in the same transaction, a high-water mark), never the caller's arguments on the hot path.
   ``append_*`` must cost the same with every plug-in on or off. Anything a plug-in writes that
   must survive a crash or an outage goes through the journal as a record kind of its own (see
   ``memory._records``): then it is fail-open and durable like an event.
2. *Fail-open.* No exception from a plug-in reaches the caller or the writer. Reads answer
   something sensible (``[]``, ``0``, the last known value) when the database is away; a
   background loop catches, logs (rate-limited) and counts its failures and carries on.
3. *Optional.* ``enabled: false`` in its section means nothing runs: no thread, no query, no
   table scan; its API still answers (empty) so callers need no ``if``.
4. *Background work is a loop* — ``initialize / loop_once / shutdown`` with an injected clock, so
   a test can step it without sleeping — run by one daemon thread that ``start`` creates and
   ``stop`` joins with a bound. Threads never start in ``__init__`` (a forked child rebuilds the
   plug-in on first use: see ``memory._forking``; a process that only forks to ``exec`` must not
   start any).
5. *Several processes.* Every process on the folder runs the same plug-ins against one
   database. Work that must happen once (a decay run) takes a lease in the database; work that is
   idempotent (indexing by digest) may run anywhere.
6. *Health.* ``health()`` returns its section of ``service.health()`` (plain values, cheap: no
   scan proportional to the data on every call) and a tuple of problems in plain words. A
   problem makes the service ``degraded``; it never makes it ``down`` (memory still records).
7. *Audit.* A plug-in that forgets, restores or changes what recall returns writes a line to the
   audit sink it is given (``memory._audit.AuditSink``; ``emit`` never raises or blocks).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Plugin(Protocol):
    """What the service calls on each plug-in (and nothing else)."""

    def start(self) -> None:
        """Start background work, if any (called once, after every part of the service exists)."""

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop background work within ``timeout``; never raises; safe to call twice."""

    def health(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(this plug-in's section of ``service.health()``, problems in plain words)."""
