"""The dead-letter file: JSON lines, one per record that failed ``max_retries`` times.

Each line holds the record (``kind``, ``row``), ``reason``, ``attempts``, ``first_error``,
``last_error``, ``first_failed_at``, ``last_failed_at`` and ``dead_at`` (epoch seconds). The file
is bounded by ``failure_queue.dead_letter_max_mb``; a record that would exceed it is dropped
and counted as ``dead_letter_full``. Ids already present are not written twice, so a replay
after a crash cannot duplicate a dead letter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._slot import open_new

log = logging.getLogger("memory.queue")
LOCK_WAIT_S = 5.0

KIND_NAMES = {1: "event", 2: "turn", 3: "finish", 4: "edge", 5: "touch"}  # as in memory._records


def record_key(kind: int, row: tuple[Any, ...] | list[Any]) -> str:
    """Identity of a record: a finish is keyed by its turn and timestamp (a turn may finish twice)."""
    return f"{kind}:{row[0]}:{row[4]}" if kind == 3 else f"{kind}:{row[0]}"


class DeadLetter:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lock_warned = False
        self.keys: set[str] = set()
        self.size = 0
        self.loaded = False
        # Told about each entry once it is durably in the file (the audit log's dead_letter line).
        self.on_written: Callable[[dict[str, Any]], None] | None = None

    def load(self) -> None:
        """Read the ids already dead-lettered (done by the writer thread, never the constructor)."""
        self.keys = {record_key(e["kind"], e["row"]) for e in self.entries()}
        self.loaded = True

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every well-formed entry; malformed lines are skipped (and reported by ``check``)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device must never block the writer
            os.close(fd)
            raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
        fh = open(fd, encoding="utf-8", errors="replace")
        with fh:
            self.size = os.fstat(fh.fileno()).st_size
            for line in fh:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry["kind"] in KIND_NAMES and isinstance(entry["row"], list):
                        yield entry

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the file across processes (a live service and ``memory dead-letter``)."""
        with self._lock:
            fd = os.open(self.path.with_name(self.path.name + ".lock"),
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                self._lock_file(fd)
                yield
            finally:
                os.close(fd)

    def _lock_file(self, fd: int) -> None:
        # POSIX record locks (lockf), not flock: a forked child does not inherit them, so a fork
        # in the middle of a dead-letter write can never leave the parent's writer waiting on a
        # lock held by the child. Bounded: a stuck holder costs a retry, never a hang.
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    if not self._lock_warned:  # no locks on this file system: in-process lock only
                        self._lock_warned = True
                        log.warning("cannot lock the dead-letter file (%s); maintenance commands may race", exc)
                    return
                if time.monotonic() >= deadline:
                    raise OSError(errno.EAGAIN, "the dead-letter file stays locked by another process") from None
                time.sleep(0.01)

    def add(self, entry: dict[str, Any]) -> str:
        """Append an entry durably. Returns ``"written"``, ``"duplicate"`` or ``"full"``.

        Raises ``OSError`` if the file cannot be written (the caller keeps the record). Holds
        the file lock, and measures the file under it: a requeue or purge by another process may
        have rewritten it since.
        """
        key = record_key(entry["kind"], entry["row"])
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")
        with self.locked():
            if key in self.keys:
                return "duplicate"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o644)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
                self.size = st.st_size
                if self.size + len(line) > self.max_bytes:
                    return "full"
                os.write(fd, line)
                os.fsync(fd)  # the journal segment holding it may be deleted right after
            finally:
                os.close(fd)
            self.size += len(line)
            self.keys.add(key)
        if self.on_written is not None:
            with contextlib.suppress(Exception):
                self.on_written(entry)
        return "written"

    def rewrite(self, decide: Callable[[dict[str, Any]], dict[str, Any] | None]) -> int:
        """Rewrite the file atomically under the lock, keeping ``decide(entry)`` for each entry
        (None drops it). Entries appended meanwhile by a live service are read here too, so
        they are never lost. Returns how many entries were kept."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with self.locked():
            keep = [e for e in (decide(entry) for entry in self.entries()) if e is not None]
            with os.fdopen(open_new(tmp), "w", encoding="utf-8") as fh:
                for entry in keep:
                    fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            self.keys = {record_key(e["kind"], e["row"]) for e in keep}
            self.size = self.path.stat().st_size
        return len(keep)
