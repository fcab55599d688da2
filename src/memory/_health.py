"""What "healthy" means, decided in one place: the service's status and the CLI's exit code.

``MemoryService.health()`` gathers facts (:class:`HealthFacts`) and :func:`assess` turns them
into a status with its reasons. ``memory health`` adds one more fact — whether a connection to
the database can be opened at all (:func:`probe_database`) — and :func:`verdict` maps everything
to an exit code. The statuses:

``ok``        the schema is at head, the database answers, nothing waits on disk, nothing was
              dropped or quarantined, no vault conflict, the journal is on disk.
``starting``  like ``ok`` except that the writer has not brought the schema to head yet (right
              after start, or while another process holds the migration lock). Never ``ok``:
              until the schema is ready no record can be written.
``degraded``  memory works — records are accepted and journaled — but something needs
              attention: the database does not answer now (records wait), a backlog on disk,
              drops, quarantined damage, vault conflicts, a journal held in memory only.
``closed``    the service was closed; it accepts nothing any more.
``disabled``  the kill switch (``MEMORY_ENABLED=0``), reported by the disabled service.

Exit codes of ``memory health``: 0 ``ok``; 1 ``starting`` or ``degraded``; 2 ``down``. **Down**
means memory cannot do its job until someone acts: the service cannot be started (invalid
config, construction failed), it is closed, or the database is *unreachable* — no connection to
it can even be opened (nothing listens at the address, the host name does not resolve, no
route, the SQLite file cannot be opened or created). A database that accepts the connection and
then fails (resets it, refuses the login or handshake, is locked, times out) is *degraded*: it
is there, and the journal holds the records until it answers.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from ._errors import exception_chain

OK, STARTING, DEGRADED, CLOSED, DOWN, DISABLED = "ok", "starting", "degraded", "closed", "down", "disabled"
EXIT_OK, EXIT_DEGRADED, EXIT_DOWN = 0, 1, 2

# errno values meaning "no connection could be opened at all" (as opposed to opened, then failed).
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL,
                       errno.EHOSTDOWN, errno.ENETDOWN}


@dataclasses.dataclass(frozen=True)
class HealthFacts:
    closed: bool
    reachable: bool
    schema_ready: bool
    pending_disk: int = 0
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    quarantined: int = 0
    conflicts: int = 0
    journal_problem: str | None = None  # set when records are held in memory only
    unreadable_folders: int = 0  # vault folders that could not be listed (their notes kept as last synced)
    notes_not_in_database: int = 0  # vault notes the database rejected or does not hold yet
    plugin_problems: tuple[str, ...] = ()  # each in plain words, from a plug-in (recall index, ...)
    latency_ms: float | None = None  # the database round trip, when it answered
    latency_warn_ms: float = 1000.0  # health.latency_warn_ms
    backlog_warn: int = 1  # health.backlog_warn


@dataclasses.dataclass(frozen=True)
class Assessment:
    status: str
    warnings: tuple[str, ...]


def assess(f: HealthFacts) -> Assessment:
    """The service's status and every reason it is not ``ok``."""
    if f.closed:
        return Assessment(CLOSED, ("the service is closed; it accepts nothing",))
    warnings: list[str] = []
    if not f.reachable:
        warnings.append("the database does not answer; records wait in the local journal")
    if not f.schema_ready:
        warnings.append("the database schema is not at head yet; nothing is written until it is")
    if f.reachable and f.latency_ms is not None and f.latency_ms > f.latency_warn_ms:
        warnings.append(f"the database answers slowly: a round trip took {f.latency_ms:.0f} ms "
                        f"(health.latency_warn_ms is {f.latency_warn_ms:g})")
    if f.pending_disk >= f.backlog_warn:
        warnings.append(f"{f.pending_disk} records wait on disk for the database")
    dropped = {k: v for k, v in f.dropped.items() if v}
    if dropped:
        warnings.append("records were dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())))
    if f.quarantined > 0:
        warnings.append(f"{f.quarantined} damaged journal ranges or unknown files were quarantined")
    if f.conflicts > 0:
        warnings.append(f"{f.conflicts} vault conflict copies wait for a human")
    if f.unreadable_folders > 0:
        warnings.append(f"{f.unreadable_folders} vault folders cannot be read; their notes are kept as last synced")
    if f.notes_not_in_database > 0:
        warnings.append(f"{f.notes_not_in_database} vault notes are not in the database; `memory vault check` "
                        "says why")
    if f.journal_problem:
        warnings.append(f"the journal is held in memory only ({f.journal_problem}); a crash would lose records")
    warnings += f.plugin_problems
    if not warnings:
        return Assessment(OK, ())
    if warnings == ["the database schema is not at head yet; nothing is written until it is"]:
        return Assessment(STARTING, tuple(warnings))  # everything else is fine: it is on its way
    return Assessment(DEGRADED, tuple(warnings))


@dataclasses.dataclass(frozen=True)
class Probe:
    answered: bool  # SELECT 1 came back
    connected: bool  # a connection could be opened (False: unreachable)
    error: str | None = None
    latency_ms: float | None = None  # the round trip: a pooled connection, SELECT 1 and the revision read
    revision: str | None = None  # the schema revision stamped in the database (None: not stamped yet)


def unreachable(exc: BaseException) -> bool:
    """True if ``exc`` (or anything it wraps) says no connection could be opened at all."""
    for e in exception_chain(exc):
        if isinstance(e, (ConnectionRefusedError, socket.gaierror)):
            return True
        if isinstance(e, OSError) and not isinstance(e, ConnectionResetError) and e.errno in _UNREACHABLE_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError) and "unable to open database file" in str(e):
            return True
    return False


def _message(exc: BaseException, secret: str | None) -> str:
    inner = getattr(exc, "orig", None)
    text = f"{type(inner or exc).__name__}: {inner if inner is not None else exc}"
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


def probe_database(store: Any, secret: str | None = None) -> Probe:
    """One ``SELECT 1`` on a fresh pooled connection, bounded by the store's own timeouts. Never raises.

    ``secret`` (the DSN's password) is scrubbed from the error text.
    """
    try:
        start = time.perf_counter()
        with store.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            latency = (time.perf_counter() - start) * 1000
            try:
                revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except Exception:  # noqa: BLE001 - no such table yet: a database never migrated
                revision = None
        return Probe(True, True, latency_ms=round(latency, 3), revision=None if revision is None else str(revision))
    except Exception as exc:  # noqa: BLE001 - a probe answers, it does not raise
        return Probe(False, not unreachable(exc), _message(exc, secret))


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str
    exit_code: int
    reasons: tuple[str, ...]


def verdict(report: Mapping[str, Any] | None, probe: Probe | None = None, startup_error: str | None = None) -> Verdict:
    """The CLI's answer from a health report (None: the service could not be built)."""
    if report is None:
        return Verdict(DOWN, EXIT_DOWN, (f"the memory service cannot start: {startup_error or 'unknown error'}",))
    status = str(report.get("status"))
    reasons = tuple(str(w) for w in report.get("warnings") or ())
    if status == CLOSED:
        return Verdict(DOWN, EXIT_DOWN, reasons or ("the service is closed",))
    if probe is not None and not probe.answered and not probe.connected:
        why = f"the database is unreachable: {probe.error}" if probe.error else "the database is unreachable"
        return Verdict(DOWN, EXIT_DOWN, (why, *reasons))
    if status == OK:
        return Verdict(OK, EXIT_OK, ())
    if status in (STARTING, DEGRADED, DISABLED):
        return Verdict(status, EXIT_DEGRADED, reasons)
    return Verdict(DEGRADED, EXIT_DEGRADED, reasons or (f"unknown status {status!r}",))
