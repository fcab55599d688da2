"""The local journal: one process's append-only segments in a claimed slot folder.

Layout of ``failure_queue.path``::

    slot-0/                 claimed by one live process (``flock`` on slot-0/lock)
      seg-000000000007.log  journal segments, oldest first
      state.json            low watermark + lifetime counters (rewritten atomically)
    slot-1/ ...             another process sharing the same config
    quarantine/             damaged bytes and unknown files, never deleted automatically
    dead-letter.jsonl       records that failed ``max_retries`` times

A process claims the first slot no live process holds. Slots left behind by processes that
are gone (their lock is free) are *adopted* at start-up: their segments are moved into the
claimed slot after its own, so nothing waits for a process that will never come back.

Durability: :meth:`Journal.append` copies the record into a shared, preallocated memory map of
the segment (the page cache), so an acknowledged record survives ``kill -9``. Power loss is
bounded by the fsync policy: ``always`` (msync before returning), ``interval`` (the writer
syncs every ``fsync_interval_ms``: at most that window is lost), ``never`` (the OS decides,
typically within 30 s).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import mmap
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ._segments import HEADER_LEN, header, parse_segment_name, read_header, segment_name

log = logging.getLogger("memory.queue")

STATE_FILE = "state.json"
RELEASE_STEP = 1 << 20
LOCK_FILE = "lock"
DEAD_LETTER_FILE = "dead-letter.jsonl"
QUARANTINE_DIR = "quarantine"


def atomic_write_json(path: Path, data: Any, fsync: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def quarantine(root: Path, name: str, data: bytes | None = None, source: Path | None = None) -> Path | None:
    """Keep damaged bytes (or move a whole unknown file) in ``root/quarantine``. Never raises."""
    qdir = root / QUARANTINE_DIR
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        target = qdir / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{name}"
        if source is not None:
            shutil.move(str(source), target)
        else:
            with open(target, "wb") as fh:
                fh.write(data or b"")
        return target
    except OSError as exc:
        log.warning("could not quarantine %s: %s", name, exc)
        return None


class Slot:
    """A claimed slot folder, exclusively ours while the lock is held."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.path, self._lock_fd = self._claim(root)

    @staticmethod
    def _try_lock(path: Path) -> int | None:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def _claim(self, root: Path) -> tuple[Path, int]:
        n = 0
        while True:
            candidate = root / f"slot-{n}"
            fd = self._try_lock(candidate)
            if fd is not None:
                return candidate, fd
            n += 1

    def adopt_orphans(self, next_id: int) -> int:
        """Move segments of slots no live process holds into ours (ids from ``next_id``)."""
        for other in sorted(self.root.glob("slot-*")):
            if other == self.path or not other.is_dir():
                continue
            fd = self._try_lock(other)
            if fd is None:
                continue  # a live process owns it
            try:
                for seg in sorted(s for s in (parse_segment_name(p.name) for p in other.iterdir()) if s is not None):
                    os.replace(other / segment_name(seg), self.path / segment_name(next_id))
                    next_id += 1
                with contextlib.suppress(OSError):
                    (other / STATE_FILE).unlink()
            except OSError as exc:
                log.warning("could not adopt leftover queue %s: %s", other, exc)
            finally:
                os.close(fd)
        return next_id

    def release(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1


class DiskFull(OSError):
    """Creating the next segment would exceed ``failure_queue.max_disk_mb``."""


class Journal:
    """Append-only segments in one slot. ``append`` is thread-safe when the caller holds ``lock``.

    Segments are preallocated (``posix_fallocate``) and written through a shared memory map: an
    append is a memory copy into the page cache — no system call, no GIL hand-off — and the
    kernel owns those pages, so they survive the death of the process exactly like a
    ``write()``. Preallocating real blocks is what makes this safe: a write through a map onto
    a full disk would otherwise kill the process with SIGBUS. Where a file system cannot
    preallocate, the journal falls back to one ``os.write`` per record. A sealed segment is
    trimmed to its used size; a segment whose file still has its full capacity was never sealed
    (its run crashed) and its zero tail is unused space.
    """

    def __init__(self, slot: Slot, max_segment_bytes: int, fsync: str, max_disk_bytes: int = 1 << 62) -> None:
        self.slot = slot
        self.dir = slot.path
        self.max_segment_bytes = max(max_segment_bytes, HEADER_LEN + 1024)
        self.max_disk_bytes = max_disk_bytes
        self.fsync_policy = fsync
        self.lock = threading.Lock()
        self.sizes: dict[int, int] = {}  # live segment id -> bytes used (readable end)
        self.unsealed: set[int] = set()  # earlier runs' segments that were never trimmed
        self.unknown: list[Path] = []
        self._scan_dir(adopt=False)
        first_new = max(self.sizes, default=0) + 1
        first_new = slot.adopt_orphans(first_new)
        self._scan_dir(adopt=True)
        self.first_new = first_new  # segments below this id were left by earlier runs
        self.active = first_new - 1
        self.capacity = 0
        self.allocated = sum(self._file_size(self.path_of(s)) for s in self.sizes)
        self.total = sum(self.sizes.values())
        self.fd = -1
        self.map: mmap.mmap | None = None
        self.use_mmap = True
        self.dirty = False
        self.last_sync = time.monotonic()
        self.broken_until = 0.0
        self._released = 0

    def _scan_dir(self, adopt: bool) -> None:
        for p in self.dir.iterdir():
            seg = parse_segment_name(p.name) if p.is_file() else None
            if seg is None:
                if not adopt and p.name not in (STATE_FILE, LOCK_FILE, STATE_FILE + ".tmp"):
                    self.unknown.append(p)
                continue
            if seg in self.sizes:
                continue
            size = self._file_size(p)
            capacity = read_header(p)
            self.sizes[seg] = size
            if capacity is not None and size == capacity:
                self.unsealed.add(seg)

    @staticmethod
    def _file_size(p: Path) -> int:
        try:
            return p.stat().st_size
        except OSError:
            return 0

    def path_of(self, seg: int) -> Path:
        return self.dir / segment_name(seg)

    def _open_next(self, need: int) -> None:
        capacity = max(self.max_segment_bytes, HEADER_LEN + need)
        self._seal_active()
        if self.allocated + capacity > self.max_disk_bytes:
            raise DiskFull(errno.ENOSPC, "queue folder reached max_disk_mb")
        seg = self.active + 1
        path = self.path_of(seg)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            mapped = None
            if self.use_mmap:
                try:
                    os.posix_fallocate(fd, 0, capacity)
                    mapped = mmap.mmap(fd, capacity)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                        raise
                    self.use_mmap = False  # no preallocation here: fall back to write()
                    os.ftruncate(fd, 0)
            if mapped is not None:
                mapped[0:HEADER_LEN] = header(capacity)
            else:
                _write_all(fd, header(0))
                capacity = HEADER_LEN
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self.fd, self.map, self.active, self.capacity = fd, mapped, seg, capacity
        self._released = 0
        self.sizes[seg] = HEADER_LEN
        self.total += HEADER_LEN
        self.allocated += capacity

    def _seal_active(self) -> None:
        if self.fd < 0:
            return
        used = self.sizes.get(self.active, HEADER_LEN)
        if self.map is not None:
            with contextlib.suppress(OSError, ValueError):
                if self.fsync_policy != "never":
                    self.map.flush()
            with contextlib.suppress(OSError, ValueError):
                self.map.close()
            self.map = None
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, used)  # sealed: exact size, no zero tail
                self.allocated -= self.capacity - used
        elif self.fsync_policy != "never":
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1

    def append(self, data: bytes) -> tuple[int, int, int]:
        """Write one framed record; returns ``(segment, start, end)``. Raises ``OSError``.

        Caller holds ``self.lock``. Failures can only happen when a new segment is created (the
        space of the current one is reserved), or in write() mode, where a short or failed write
        is truncated back so no torn frame is ever left in the middle of a segment.
        """
        seg, start = self.active, self.sizes.get(self.active, 0)
        end = start + len(data)
        if self.fd < 0 or end > self.capacity and (self.map is not None or end - HEADER_LEN > self.max_segment_bytes):
            if time.monotonic() < self.broken_until:
                raise OSError(errno.EIO, "journal unavailable (backing off after an error)")
            try:
                self._open_next(len(data))
            except DiskFull:
                raise  # a bound, not a fault: checked again (cheaply) on every append
            except OSError:
                self.broken_until = time.monotonic() + 0.5  # don't retry a failing open() per append
                raise
            seg, start = self.active, HEADER_LEN
            end = start + len(data)
        if self.map is not None:
            self.map[start:end] = data
            if end - self._released > RELEASE_STEP:  # once per MB: keep RSS bounded in outages too
                self._release_locked(end)
            if self.fsync_policy == "always":
                page = start - start % mmap.PAGESIZE
                self.map.flush(page, end - page)
            else:
                self.dirty = True
        else:
            try:
                _write_all(self.fd, data)
            except OSError:
                try:
                    os.ftruncate(self.fd, start)
                except OSError:
                    self._seal_active()  # cannot repair: never write after a torn frame
                raise
            if self.fsync_policy == "always":
                os.fsync(self.fd)
            else:
                self.dirty = True
            self.allocated += len(data)
        self.sizes[seg] = end
        self.total += len(data)
        return seg, start, end

    def sync(self) -> None:
        """Flush unsynced appends to stable storage (``interval`` policy)."""
        with self.lock:
            dirty, self.dirty = self.dirty, False
            if dirty:
                with contextlib.suppress(OSError, ValueError):
                    if self.map is not None:
                        self.map.flush()
                    elif self.fd >= 0:
                        os.fsync(self.fd)
        self.last_sync = time.monotonic()

    def release_pages(self) -> None:
        """Drop the written part of the active segment's map from this process's resident set.

        The pages stay in the page cache (dirty ones are written back as usual; nothing is
        lost); only our mapping of them goes, so a long outage grows RSS by at most a few pages
        of the journal instead of a whole segment.
        """
        with self.lock:
            self._release_locked(self.sizes.get(self.active, 0))

    def _release_locked(self, end: int) -> None:
        m = self.map
        upto = end // mmap.PAGESIZE * mmap.PAGESIZE
        if m is None or upto <= self._released:
            return
        with contextlib.suppress(OSError, ValueError):
            m.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
        self._released = upto

    def live_end(self, seg: int) -> int | None:
        """Readable end of ``seg`` if it is the segment being appended to, else None."""
        with self.lock:
            return self.sizes.get(seg) if seg == self.active and self.fd >= 0 else None

    def next_segment(self, seg: int) -> int | None:
        with self.lock:
            later = [s for s in self.sizes if s > seg]
        return min(later) if later else None

    def delete(self, seg: int) -> None:
        with self.lock:
            if seg == self.active and self.fd >= 0:
                return
            self.total -= self.sizes.pop(seg, 0)
            self.unsealed.discard(seg)
            path = self.path_of(seg)
            self.allocated -= self._file_size(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def segments(self) -> list[int]:
        with self.lock:
            return sorted(self.sizes)

    def close(self) -> None:
        with self.lock:
            self._seal_active()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        if n < len(view):
            # A short write of an O_APPEND file means the disk is full; don't write the rest
            # elsewhere, let append() truncate back to the record boundary.
            raise OSError(errno.ENOSPC, "short write (disk full?)")
        view = view[n:]


def load_state(slot_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((slot_dir / STATE_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
