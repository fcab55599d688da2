"""The local journal: one process's append-only segments in its claimed slot folder.

Durability: :meth:`Journal.append` copies the record into a shared, preallocated memory map of
the segment (the page cache), so an acknowledged record survives ``kill -9``. Power loss is
bounded by the fsync policy: ``always`` (msync before returning), ``interval`` (a dedicated
thread syncs every ``fsync_interval_ms``, whatever the database does), ``never`` (the OS
decides, typically within 30 s).

Disk accounting counts what is written (``total``), and a new segment is never preallocated
beyond what ``max_disk_mb`` still allows, so the folder stays within the bound. A segment left
unsealed by a run that crashed has its preallocated zero tail cut at the last written byte when
the next run opens the slot (or adopts it), before anything is appended, so a crash loop during
an outage does not fill the disk bound with empty preallocations.

Segment ids come from ``next_id`` and only grow (see :mod:`._slot`); a segment's readable
records start at :meth:`start_of` (the header end, or the resume offset an adopted segment
brought along).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ._segments import HEADER_LEN, header, parse_segment_name, read_header, segment_name
from ._slot import LOCK_FILE, STATE_FILE, Slot, SlotState

log = logging.getLogger("memory.queue")

RELEASE_STEP = 1 << 20
DEAD_LETTER_FILE = "dead-letter.jsonl"
QUARANTINE_DIR = "quarantine"
_OWN_FILES = (STATE_FILE, LOCK_FILE, STATE_FILE + ".tmp")


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


class DiskFull(OSError):
    """Appending would exceed ``failure_queue.max_disk_mb``."""


def _regular(p: Path) -> bool:
    """A regular file itself, not through a symlink (FIFOs would block a read forever)."""
    try:
        return stat.S_ISREG(os.lstat(p).st_mode)
    except OSError:
        return False


def _file_size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _data_end(fd: int, size: int) -> int:
    """Where the file's data ends, if the file system can tell cheaply (else ``size``).

    ``SEEK_HOLE`` finds the first hole; ``SEEK_DATA`` from there failing with ENXIO proves
    nothing but holes follow (a zero page in the *middle*, from a power cut, must not cut off
    the records after it). Preallocated, never written ranges read as holes on ext4/xfs.
    """
    try:
        hole = os.lseek(fd, HEADER_LEN, os.SEEK_HOLE)
        if hole >= size:
            return size
        try:
            os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as exc:
            return hole if exc.errno == errno.ENXIO else size
        return size
    except (OSError, AttributeError):
        return size


def _last_nonzero(fd: int, size: int) -> int:
    """Offset just past the last non-zero byte (payloads are UTF-8 text: a record never ends in 0)."""
    end = _data_end(fd, size)
    step = 1 << 20
    while end > 0:
        start = max(0, end - step)
        chunk = os.pread(fd, end - start, start)
        stripped = chunk.rstrip(b"\x00")
        if stripped:
            return start + len(stripped)
        end = start
    return 0


class Journal:
    """Append-only segments in one slot. ``append`` is thread-safe when the caller holds ``lock``.

    Segments are preallocated (``posix_fallocate``) and written through a shared memory map: an
    append is a memory copy into the page cache — no system call, no GIL hand-off — and the
    kernel owns those pages, so they survive the death of the process exactly like a
    ``write()``. Preallocating real blocks is what makes this safe: a write through a map onto
    a full disk would otherwise kill the process with SIGBUS. Where a file system cannot
    preallocate, the journal falls back to ``os.pwrite`` at explicit offsets (a failed write is
    truncated back, and the next one goes exactly where the last good frame ended).
    """

    memory_only = False
    reason = ""

    def __init__(self, slot: Slot, state: SlotState, max_segment_bytes: int, fsync: str,
                 max_disk_bytes: int = 1 << 62) -> None:
        self.slot = slot
        self.dir = slot.path
        self.max_segment_bytes = max(max_segment_bytes, HEADER_LEN + 1024)
        self.max_disk_bytes = max_disk_bytes
        self.fsync_policy = fsync
        self.lock = threading.Lock()
        self.sizes: dict[int, int] = {}  # live segment id -> bytes used (readable end)
        self.unsealed: set[int] = set()  # earlier runs' segments that were never trimmed
        self.unknown: list[Path] = []
        self.starts: dict[int, int] = {}  # resume offsets (adopted segments, the watermark's)
        self._scan_dir()
        self.total = 0
        # A crashed run's segment keeps its preallocated zero tail until it is cut; doing it
        # here, before anything is appended, keeps a crash loop from filling max_disk_mb.
        self.trim_unsealed()
        self.next_id = max([state.next_segment, *(s + 1 for s in self.sizes)])
        for seg, off in state.starts.items():
            if seg in self.sizes:
                self.starts[seg] = off
        self.adopted: dict[int, int | None] = {}  # adopted segment -> record count if known
        self.first_new = self.next_id  # segments below this were left by earlier runs
        self.active = -1
        self.capacity = 0
        self.fd = -1
        self.map: mmap.mmap | None = None
        self.use_mmap = True
        self.dirty = False
        self.on_dirty: Callable[[], None] | None = None  # wakes the sync thread
        self.last_sync = time.monotonic()
        self.broken_until = 0.0
        self._released = 0
        self.total = sum(self.sizes.values())

    # -- start-up ------------------------------------------------------------------------------------
    def _scan_dir(self) -> None:
        for p in self.dir.iterdir():
            seg = parse_segment_name(p.name) if _regular(p) else None
            if seg is None:
                if p.name not in _OWN_FILES:
                    self.unknown.append(p)
                continue
            self._add_existing(seg, p)

    def _add_existing(self, seg: int, p: Path) -> None:
        size = _file_size(p)
        self.sizes[seg] = size
        if read_header(p) == size:
            self.unsealed.add(seg)

    def adopt_orphans(self, state: SlotState, save: Callable[[], None]) -> int:
        """Take over the segments of slots whose process is gone. Returns how many were adopted.

        The orphan's resume offsets and counts come along, so nothing it resolved is replayed.
        ``save`` persists our state (with the ids reserved here) before any file moves.
        """
        adopted = 0
        for other in self.slot.orphans():
            try:
                adopted += self._adopt(other, state, save)
            except OSError as exc:
                log.warning("could not adopt leftover queue %s: %s", other, exc)
        self.first_new = self.next_id
        return adopted

    def _adopt(self, other: Path, state: SlotState, save: Callable[[], None]) -> int:
        theirs = SlotState.load(other)
        names: dict[int, str] = {}
        for p in other.iterdir():
            seg = parse_segment_name(p.name)
            if seg is None:
                continue
            if not _regular(p):  # a FIFO, folder or symlink named like a segment: never opened
                self.unknown.append(p)
                continue
            names[seg] = p.name
        mark = theirs.watermark
        todo = []
        for seg in sorted(names):
            if mark is not None and seg < mark[0]:
                with contextlib.suppress(OSError):  # resolved before that process died
                    os.unlink(other / names[seg])
            else:
                todo.append(seg)
        if not todo:
            return 0
        with self.lock:
            base = self.next_id
            self.next_id += len(todo)
        mapping = {seg: base + i for i, seg in enumerate(todo)}
        for seg, new in mapping.items():
            start = theirs.starts.get(seg, HEADER_LEN)
            if mark is not None and seg == mark[0]:
                start = max(start, mark[1])
            if start > _file_size(other / names[seg]):
                start = HEADER_LEN  # a resume offset past the end cannot be right: replay it all
            if start > HEADER_LEN:
                self.starts[new] = start
            self.adopted[new] = theirs.counts.get(seg)
        save()  # our state now names the new ids: a kill from here on leaves them ours
        for seg, new in mapping.items():
            src, dst = other / names[seg], self.path_of(new)
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                self.adopted.pop(new, None)
                continue
            with self.lock:
                self._add_existing(new, dst)
                self.total += self.sizes[new]
        self.trim_unsealed()  # the orphan's crashed tail, now ours
        theirs.watermark, theirs.starts, theirs.counts = None, {}, {}
        with contextlib.suppress(OSError):
            theirs.save(other)  # keeps its next_segment and lifetime counters
        log.info("adopted %d queue segments left by a stopped process in %s", len(mapping), other.name)
        return len(mapping)

    def trim_unsealed(self) -> None:
        """Cut crashed runs' segments at their last written byte (the rest is preallocated zeros)."""
        for seg in sorted(self.unsealed):
            path = self.path_of(seg)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                size = os.fstat(fd).st_size
                end = max(_last_nonzero(fd, size), HEADER_LEN)
                os.ftruncate(fd, end)
            except OSError as exc:
                log.warning("could not trim queue segment %s: %s", path.name, exc)
                continue
            finally:
                os.close(fd)
            with self.lock:
                if seg in self.sizes:
                    self.total += end - self.sizes[seg]
                    self.sizes[seg] = end
                self.unsealed.discard(seg)
            log.info("trimmed the unused preallocated tail of queue segment %s", path.name)

    # -- appending -----------------------------------------------------------------------------------
    def path_of(self, seg: int) -> Path:
        return self.dir / segment_name(seg)

    def start_of(self, seg: int) -> int:
        return self.starts.get(seg, HEADER_LEN)

    def _open_next(self, need: int) -> None:
        self._seal_active()
        room = self.max_disk_bytes - self.total
        if HEADER_LEN + need > room:
            raise DiskFull(errno.ENOSPC, "queue folder reached max_disk_mb")
        # Never preallocate beyond the disk bound: the folder's real size stays within it.
        capacity = min(max(self.max_segment_bytes, HEADER_LEN + need), room)
        seg = self.next_id
        path = self.path_of(seg)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.next_id = seg + 1  # used even if the rest fails: an id is never handed out twice
        try:
            mapped = None
            if self.use_mmap:
                try:
                    os.posix_fallocate(fd, 0, capacity)
                    mapped = mmap.mmap(fd, capacity)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                        raise
                    self.use_mmap = False  # no preallocation here: fall back to pwrite()
                    os.ftruncate(fd, 0)
            if mapped is not None:
                mapped[0:HEADER_LEN] = header(capacity)
            else:
                _pwrite_all(fd, header(0), 0)
                capacity = max(self.max_segment_bytes, HEADER_LEN + need)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self.fd, self.map, self.active, self.capacity = fd, mapped, seg, capacity
        self._released = 0
        self.sizes[seg] = HEADER_LEN
        self.total += HEADER_LEN

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
        elif self.fsync_policy != "never":
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1

    def append(self, data: bytes) -> tuple[int, int, int]:
        """Write one framed record; returns ``(segment, start, end)``. Raises ``OSError``.

        Caller holds ``self.lock``. With a map, failures can only happen when a new segment is
        created (the space of the current one is reserved); in pwrite() mode a short or failed
        write is truncated back, so no torn frame is left in the middle of a segment.
        """
        n = len(data)
        if self.total + n > self.max_disk_bytes:
            raise DiskFull(errno.ENOSPC, "queue folder reached max_disk_mb")
        seg, start = self.active, self.sizes.get(self.active, 0)
        end = start + n
        if self.fd < 0 or end > self.capacity:
            if time.monotonic() < self.broken_until:
                raise OSError(errno.EIO, "journal unavailable (backing off after an error)")
            try:
                self._open_next(n)
            except DiskFull:
                raise  # a bound, not a fault: checked again (cheaply) on every append
            except OSError:
                self.broken_until = time.monotonic() + 0.5  # don't retry a failing open() per append
                raise
            seg, start = self.active, HEADER_LEN
            end = start + n
        if self.map is not None:
            self.map[start:end] = data
            if end - self._released > RELEASE_STEP:  # once per MB: keep RSS bounded in outages too
                self._release_locked(end)
            if self.fsync_policy == "always":
                page = start - start % mmap.PAGESIZE
                self.map.flush(page, end - page)
            elif not self.dirty:
                self._mark_dirty()
        else:
            try:
                _pwrite_all(self.fd, data, start)
            except OSError:
                try:
                    os.ftruncate(self.fd, start)
                except OSError:
                    self._seal_active()  # cannot repair: never write after a torn frame
                raise
            if self.fsync_policy == "always":
                os.fsync(self.fd)
            elif not self.dirty:
                self._mark_dirty()
        self.sizes[seg] = end
        self.total += n
        return seg, start, end

    def _mark_dirty(self) -> None:
        self.dirty = True
        if self.on_dirty is not None:
            self.on_dirty()

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

    # -- reading and housekeeping ----------------------------------------------------------------------
    def live_end(self, seg: int) -> int | None:
        """Readable end of ``seg`` if it is the segment being appended to, else None."""
        with self.lock:
            return self.sizes.get(seg) if seg == self.active and self.fd >= 0 else None

    def head(self) -> tuple[int, int]:
        """The position just past the newest record."""
        with self.lock:
            return self.head_unlocked()

    def head_unlocked(self) -> tuple[int, int]:
        """:meth:`head` for a caller that already holds ``lock``."""
        if self.sizes:
            last = max(self.sizes)
            return (last, self.sizes[last])
        return (self.next_id, HEADER_LEN)

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
            self.starts.pop(seg, None)
            path = self.path_of(seg)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def segments(self) -> list[int]:
        with self.lock:
            return sorted(self.sizes)

    def disk_bytes(self) -> int:
        """Bytes the segments really occupy (the active one at its preallocated size)."""
        with self.lock:
            extra = self.capacity - self.sizes.get(self.active, 0) if self.map is not None else 0
            unsealed = sum(_file_size(self.path_of(s)) - self.sizes.get(s, 0) for s in self.unsealed)
            return self.total + max(0, extra) + max(0, unsealed)

    def close(self) -> None:
        with self.lock:
            self._seal_active()

    def abandon(self) -> None:
        """Let go of everything without touching the files (after fork, in the child; or to model
        a kill -9): no seal, no truncation, no flush. The pages already copied are the kernel's."""
        m, fd = self.map, self.fd
        self.map, self.fd = None, -1
        if m is not None:
            with contextlib.suppress(OSError, ValueError, BufferError):
                m.close()
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class NullJournal(Journal):
    """No usable queue folder: every append fails, so the queue holds records in memory only."""

    memory_only = True

    def __init__(self, reason: str) -> None:  # noqa: D107 - deliberately skips the folder
        self.reason = reason
        self.lock = threading.Lock()
        self.sizes, self.unsealed, self.starts, self.adopted = {}, set(), {}, {}
        self.unknown = []
        self.next_id = self.first_new = 1
        self.active, self.capacity, self.fd, self.map = -1, 0, -1, None
        self.dirty, self.on_dirty, self.broken_until, self.total = False, None, 0.0, 0
        self.last_sync = time.monotonic()
        self.max_disk_bytes, self.fsync_policy, self.use_mmap = 0, "never", False
        self.dir = Path(os.devnull)

    def append(self, data: bytes) -> tuple[int, int, int]:
        raise OSError(errno.EIO, f"queue folder unusable: {self.reason}")

    def adopt_orphans(self, state: SlotState, save: Callable[[], None]) -> int:
        return 0

    def trim_unsealed(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def release_pages(self) -> None:
        return None

    def close(self) -> None:
        return None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        if n < len(view):
            # A short write means the disk is full; don't write the rest elsewhere, let append()
            # truncate back to the record boundary.
            raise OSError(errno.ENOSPC, "short write (disk full?)")
        view = view[n:]
        offset += n
