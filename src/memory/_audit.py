"""The audit log: one JSON line per recall, forget/restore, zone change, decay run, dead letter,
vault conflict, outage start/end and replay start/end.

``AuditLog.emit`` is called on the hot path, so it only encodes the line and appends it to a
bounded in-memory queue; one daemon thread writes the queue to the file. Nothing here raises
into a caller or makes one wait on the disk: a full queue, a full disk, an unwritable path, a
directory or a FIFO where the file should be all drop lines, counted by reason in ``stats()``
and logged at most once per interval.

Several processes may append to one file:

* every line is encoded whole before it is queued and a chunk of whole lines goes out in one
  ``write`` on an ``O_APPEND`` descriptor, so lines from different processes never interleave;
* writes hold a shared ``fcntl.flock`` on a side file (``audit.jsonl.lock``) and rotation holds
  it exclusively, so no line lands in a file after it was renamed to ``.1`` (which keeps each
  process's lines in order across files and lets ``memory logs --follow`` finish a rotated file);
* before each write the writer compares its descriptor with the path and reopens if another
  process rotated the file away.

Rotation is by size: ``audit.jsonl`` → ``.1`` → ... → ``.N``; the oldest beyond ``backups`` is
deleted. A write cut short (ENOSPC mid-line) leaves a torn fragment; the next write starts with
a newline so that fragment stays one malformed line (readers skip it) instead of spoiling the next.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any, Protocol

from . import _forking
from ._audit_events import (  # noqa: F401 - re-exported: the event types belong to the log's API
    DEAD_LETTER, DECAY_RUN, EVENT_TYPES, FORGET, OUTAGE_END, OUTAGE_START, RECALL, REPLAY_END, REPLAY_START,
    RESTORE, VAULT_CONFLICT, ZONE_CHANGE)
from ._audit_config import AuditConfig
from .queue._item import RateLimitedLog

log = logging.getLogger("memory.audit")

# queue_full: the writer fell behind by queue_size lines; io_error: the file could not be written;
# closed: emitted after close(), or still queued when close() gave up; error: a line that could not
# be encoded at all (a bug: json_safe makes every value encodable).
DROP_REASONS = ("queue_full", "io_error", "closed", "error")
HEADER = ("ts", "time", "event", "pid")
MAX_STRING_CHARS = 1000
MAX_ITEMS = 100
MAX_DEPTH = 6
MAX_LINE_BYTES = 16 * 1024
# One write at most this big, so a burst does not overshoot max_mb by much before rotating.
MAX_CHUNK_BYTES = 256 * 1024

Write = Callable[[int, bytes], int]


def backup_path(path: Path, n: int) -> Path:
    """The n-th rotated file (``audit.jsonl.1`` is the newest backup)."""
    return path.with_name(f"{path.name}.{n}")


def lock_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _cut(text: str, limit: int = MAX_STRING_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def _str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a __str__ that raises must not lose the line
        return f"<unprintable {type(value).__name__}>"


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as something ``json.dumps(allow_nan=False)`` accepts, bounded in size.

    Strings are cut at :data:`MAX_STRING_CHARS` with a marker, containers at :data:`MAX_ITEMS`
    items and :data:`MAX_DEPTH` levels; anything else becomes its ``str``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Past 64 bits a number is a mistake, and a huge one would not even print (int_max_str_digits).
        return int(value) if value.bit_length() <= 64 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _cut(bytes(value[:MAX_STRING_CHARS * 4]).decode("utf-8", "replace"))
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return _cut(str(value))
    if depth >= MAX_DEPTH:
        return _cut(_str(value))
    if isinstance(value, Mapping):
        out = {(k if isinstance(k, str) else _str(k))[:MAX_STRING_CHARS]: json_safe(v, depth + 1)
               for k, v in itertools.islice(value.items(), MAX_ITEMS)}
        if len(value) > MAX_ITEMS:
            out["…"] = f"{len(value) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        items = [json_safe(v, depth + 1) for v in itertools.islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"… {len(value) - MAX_ITEMS} more")
        return items
    return _cut(_str(value))


def utc_iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_line(event: str, fields: Mapping[str, Any], ts: float, pid: int) -> bytes:
    """One audit line: the header, then the fields made JSON-safe, UTF-8, ending in a newline.

    A field named like a header key is kept as ``field_<name>`` (the header must stay truthful).
    A line still over :data:`MAX_LINE_BYTES` keeps its header and a cut-down preview of the rest.
    """
    header: dict[str, Any] = {"ts": round(ts, 6), "time": utc_iso(ts), "event": _cut(_str(event), 100), "pid": pid}
    record = dict(header)
    for key, value in fields.items():
        record[f"field_{key}" if key in header else key] = json_safe(value)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?" rather than failing the line
    if len(data) >= MAX_LINE_BYTES:
        # At most 4 bytes per character, 6 per escaped one: the preview always fits.
        preview = text[:MAX_LINE_BYTES // 8]
        text = json.dumps({**header, "truncated": True, "preview": preview}, ensure_ascii=False,
                          separators=(",", ":"))
        data = text.encode("utf-8", "replace")
    return data + b"\n"


def query_field(text: Any, mode: str) -> dict[str, str]:
    """A recall's query as the config wants it recorded: hash, text or none."""
    try:
        if mode == "none":
            return {}
        s = text if isinstance(text, str) else _str(text)
        if mode == "text":
            return {"query": _cut(s)}
        return {"query_sha256": hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()}
    except Exception:  # noqa: BLE001 - never raises into recall
        return {}


class AuditSink(Protocol):
    """What the service holds: an :class:`AuditLog` or a :class:`NullAuditLog`."""

    enabled: bool

    def emit(self, event: str, /, **fields: Any) -> None: ...

    def query_field(self, text: Any) -> dict[str, str]: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self, timeout: float = 2.0) -> None: ...


class NullAuditLog:
    """``audit.enabled: false``: the same API, nothing written."""

    enabled = False

    def emit(self, event: str, /, **fields: Any) -> None:
        pass

    def query_field(self, text: Any) -> dict[str, str]:
        return {}

    def stats(self) -> dict[str, Any]:
        return {"enabled": False, "path": None, "written": 0, "dropped": dict.fromkeys(DROP_REASONS, 0),
                "queued": 0, "last_error": None, "writer_running": False}

    def start(self) -> NullAuditLog:
        return self

    def initialize(self) -> None:
        pass

    def loop_once(self, now: float | None = None) -> int:
        return 0

    def shutdown(self, timeout: float = 2.0) -> None:
        pass

    def close(self, timeout: float = 2.0) -> None:
        pass


class AuditLog:
    """The audit log of one process. ``start()`` runs the writer thread; tests may instead call
    ``initialize()`` and ``loop_once(now)`` themselves (with injected clocks and ``write``)."""

    enabled = True

    def __init__(self, config: AuditConfig, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, write: Write = os.write,
                 warn_interval_s: float = 30.0, retry_interval_s: float = 1.0, idle_s: float = 1.0) -> None:
        self.config, self.path = config, Path(config.path)
        self._clock, self._monotonic, self._write = clock, monotonic, write
        self._retry_interval, self._idle = retry_interval_s, idle_s
        self._max_bytes = config.max_bytes
        self._chunk = max(1, min(self._max_bytes, MAX_CHUNK_BYTES))
        self._warn = RateLimitedLog(log, warn_interval_s, monotonic)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queue: collections.deque[bytes] = collections.deque()
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._reported = dict.fromkeys(DROP_REASONS, 0)
        self._written = 0
        self._pid = os.getpid()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._torn = False
        self._retry_at = -math.inf
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._restart_in_child = False
        self._closed = False
        _forking.track(self)

    # -- the hot path ----------------------------------------------------------------------------
    def emit(self, event: str, /, **fields: Any) -> None:
        """Queue one line. Never raises, never waits for the disk."""
        try:
            if self._closed:
                self._count("closed")
                return
            if self._restart_in_child:
                self._restart_in_child = False
                self._start_thread()
            line = encode_line(event, fields, self._clock(), self._pid)
            with self._lock:
                if len(self._queue) >= self.config.queue_size:
                    self._dropped["queue_full"] += 1
                    return
                was_empty = not self._queue
                self._queue.append(line)
            if was_empty:
                self._wake.set()
        except Exception:  # noqa: BLE001 - the audit log must never fail its caller
            self._count("error")

    def query_field(self, text: Any) -> dict[str, str]:
        return query_field(text, self.config.query_text)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            dropped, queued = dict(self._dropped), len(self._queue)
        thread = self._thread
        return {"enabled": True, "path": str(self.path), "written": self._written, "dropped": dropped,
                "queued": queued, "last_error": self._last_error,
                "writer_running": thread is not None and thread.is_alive()}

    def _count(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += n

    # -- the writer ------------------------------------------------------------------------------
    def start(self) -> AuditLog:
        """Run the writer thread (it opens the file first: a hung disk must not stall start-up)."""
        self._start_thread()
        return self

    def _start_thread(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-audit", daemon=True)
        self._thread.start()

    def initialize(self) -> None:
        """Open the file now, so a bad path is reported at start (lines are not needed for that)."""
        try:
            with self._flock(fcntl.LOCK_SH):
                self._ensure_fd()
        except OSError as exc:
            self._note_error("open", exc)

    def loop_once(self, now: float | None = None) -> int:
        """Write what is queued. Returns the number of lines taken from the queue."""
        now = self._monotonic() if now is None else now
        with self._lock:
            batch, self._queue = self._queue, collections.deque()
        if batch:
            self._write_batch(list(batch), now)
        self._report_drops()
        return len(batch)

    def _run(self) -> None:
        self.initialize()
        while True:
            self._wake.clear()
            try:
                self.loop_once()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any surprise
                self._warn.warning("loop", "audit log writer failed (%r); lines may be lost", exc)
            if self._stop.is_set() and not self._queue:
                return
            self._wake.wait(self._idle)

    def _write_batch(self, lines: list[bytes], now: float) -> None:
        if now < self._retry_at:
            # The file failed moments ago: do not hammer the file system, drop until the retry time.
            self._count("io_error", len(lines))
            return
        start = 0
        while start < len(lines):
            end, size = start + 1, len(lines[start])
            while end < len(lines) and size + len(lines[end]) <= self._chunk:
                size += len(lines[end])
                end += 1
            full, error = self._write_chunk(lines[start:end])
            self._written += full
            if error is not None:
                self._count("io_error", len(lines) - start - full)
                self._retry_at = now + self._retry_interval
                self._note_error("write", error)
                return
            start = end
        self._retry_at = -math.inf

    def _write_chunk(self, lines: list[bytes]) -> tuple[int, OSError | None]:
        """Append whole lines in one write. Returns the lines fully written and the error, if any."""
        data = b"".join(lines)
        try:
            with self._flock(fcntl.LOCK_SH):
                fd = self._ensure_fd()
                size = os.fstat(fd).st_size
                if size > 0 and size + len(data) > self._max_bytes:
                    # flock drops the shared lock before taking the exclusive one (no deadlock between
                    # two upgrading processes); _rotate checks the path again under the exclusive lock.
                    if self._lock_fd is not None:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                    self._rotate(len(data))
                    fd = self._ensure_fd()
                return self._append(fd, lines, data)
        except OSError as exc:
            return 0, exc

    def _append(self, fd: int, lines: list[bytes], data: bytes) -> tuple[int, OSError | None]:
        prefix = b"\n" if self._torn else b""
        out = prefix + data
        done = 0
        error: OSError | None = None
        while done < len(out):
            try:
                n = self._write(fd, out[done:] if done else out)
            except OSError as exc:
                error = exc
                break
            except Exception as exc:  # noqa: BLE001 - an injected or odd writer: still an I/O failure
                error = OSError(errno.EIO, repr(exc))
                break
            if n <= 0:
                error = OSError(errno.EIO, "write made no progress")
                break
            done += n
        if error is None:
            self._torn = False
            return len(lines), None
        if done < len(prefix):
            return 0, error  # not even the newline went out: the old fragment is still open
        body, full, used = done - len(prefix), 0, 0
        for line in lines:
            if used + len(line) > body:
                break
            used += len(line)
            full += 1
        # Part of a line on disk: the next write starts a fresh line so it does not join the fragment.
        self._torn = used < body
        return full, error

    def _ensure_fd(self) -> int:
        """Our descriptor for the file now at the path: reopened if another process rotated it."""
        try:
            on_path: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            on_path = None
        if self._fd is not None:
            mine = os.fstat(self._fd)
            if on_path is not None and (mine.st_dev, mine.st_ino) == (on_path.st_dev, on_path.st_ino):
                return self._fd
            self._close_fd()
        if on_path is not None and not stat.S_ISREG(on_path.st_mode):
            # Checked before open: opening a FIFO could block (O_NONBLOCK below covers the race).
            raise OSError(errno.EINVAL, f"not a regular file ({_kind(on_path.st_mode)})", str(self.path))
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"not a regular file ({_kind(mode)})", str(self.path))
        self._fd = fd
        return fd

    def _rotate(self, incoming: int) -> None:
        """Under the exclusive lock: shift the backups and start a new file, unless another
        process already did. A failed rename is logged and the current file keeps growing
        (losing lines over a rotation would be worse than an oversized file)."""
        try:
            on_path = os.stat(self.path)
        except FileNotFoundError:
            return
        if on_path.st_size == 0 or on_path.st_size + incoming <= self._max_bytes:
            return
        n = self.config.backups
        try:
            if n == 0:
                os.unlink(self.path)
            else:
                for i in range(n - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(backup_path(self.path, i), backup_path(self.path, i + 1))
                os.replace(self.path, backup_path(self.path, 1))
            # Backups beyond the configured count (it was larger before) are expired too.
            extra = n + 1
            while backup_path(self.path, extra).exists():
                backup_path(self.path, extra).unlink()
                extra += 1
        except OSError as exc:
            self._note_error("rotate", exc)

    # -- the side lock ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, how: int) -> Iterator[None]:
        fd, locked = self._ensure_lock_fd(), False
        if fd is not None:
            try:
                fcntl.flock(fd, how)
                locked = True
            except OSError as exc:  # e.g. ENOLCK on a network file system
                self._warn.warning("flock", "audit log: cannot lock %s (%s); writing without the lock",
                                   lock_path(self.path), exc)
        try:
            yield  # unlocked, appends are still whole lines; only rotation loses its guard
        finally:
            if locked and fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _ensure_lock_fd(self) -> int | None:
        path = lock_path(self.path)
        if self._lock_fd is not None:
            # A lock file deleted under us would leave processes locking different files.
            with contextlib.suppress(OSError):
                mine, on_path = os.fstat(self._lock_fd), os.stat(path)
                if (mine.st_dev, mine.st_ino) == (on_path.st_dev, on_path.st_ino):
                    return self._lock_fd
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, flags, 0o644)
        except OSError as exc:
            self._warn.warning("lock", "audit log: no lock file %s (%s); writing without the lock", path, exc)
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._warn.warning("lock", "audit log: %s is not a regular file; writing without the lock", path)
            return None
        self._lock_fd = fd
        return fd

    # -- reporting -------------------------------------------------------------------------------
    def _note_error(self, what: str, exc: OSError) -> None:
        self._last_error = f"{what} {self.path}: {exc.strerror or exc}"
        self._warn.warning(f"io:{what}", "audit log: cannot %s %s (%s); audit lines are dropped until it "
                           "works again", what, self.path, exc.strerror or exc)

    def _report_drops(self) -> None:
        with self._lock:
            now = dict(self._dropped)
        for reason in ("queue_full", "error"):
            new = now[reason] - self._reported[reason]
            if new > 0:
                self._reported[reason] = now[reason]
                self._warn.warning(f"drop:{reason}", "audit log: %d lines dropped (%s)", new,
                                   reason.replace("_", " "))

    # -- the end ---------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop the writer once the queue is written (at most ``timeout`` seconds), then let go of
        the files. A writer stuck in a write keeps its descriptor (closing it under a running
        write could hand the number to another file)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._stop.set()
            self._wake.set()
            if thread is not threading.current_thread():
                thread.join(timeout)
            if thread.is_alive():
                return
        else:
            deadline = self._monotonic() + timeout
            while self._queue and self._monotonic() < deadline:
                self.loop_once()
        self._close_fd()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def close(self, timeout: float = 2.0) -> None:
        """Write what can be written within ``timeout``; later lines are dropped as ``closed``."""
        if self._closed:
            return
        self._closed = True
        self.shutdown(timeout)
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._dropped["closed"] += left
        _forking.untrack(self)

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # -- fork (see memory._forking) ----------------------------------------------------------------
    def _before_fork(self) -> None:
        self._lock.acquire()  # the child's copy of the queue is then consistent

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        """The parent's queued lines are the parent's to write; its descriptors share the parent's
        file offset and flock, so the child opens its own. Its writer starts on its first emit."""
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._queue = collections.deque()
        self._dropped, self._reported = dict.fromkeys(DROP_REASONS, 0), dict.fromkeys(DROP_REASONS, 0)
        self._written, self._pid, self._torn = 0, os.getpid(), False
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None
        self._restart_in_child = self._thread is not None and not self._closed
        self._thread = None


def _kind(mode: int) -> str:
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
             stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
    return kinds.get(stat.S_IFMT(mode), "not a regular file")


def open_audit_log(config: AuditConfig, **options: Any) -> AuditLog | NullAuditLog:
    """The configured audit log, its writer running (or the null one when disabled)."""
    if not config.enabled:
        return NullAuditLog()
    return AuditLog(config, **options).start()
