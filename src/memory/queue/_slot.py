"""Slots of a queue folder, and the state each one saves.

Layout of ``failure_queue.path``::

    slot-0/                 claimed by one live process (``flock`` on slot-0/lock)
      seg-000000000007.log  journal segments, oldest first
      state.json            watermark, segment high-water mark, resume offsets, counts, lifetime
    slot-1/ ...             another process sharing the same config
    quarantine/             damaged bytes and unknown files, never deleted automatically
    dead-letter.jsonl       records that failed ``max_retries`` times (+ dead-letter.lock)

Transitions, and the only ones: a process *claims* the first slot no live process holds; it
*adopts* the segments of slots whose lock is free (their process is gone); it *releases* its
slot only after its writer has stopped. A process owns its slot alone.

Invariants kept here:

* **Segment numbers only grow.** ``state.json`` carries ``next_segment``, above every segment
  id ever created in the slot (and above every watermark ever saved). A slot whose state
  survived while its segments did not (a reader removed an empty last segment, say) still
  numbers new segments above the old watermark, so start-up never mistakes a new, unread
  segment for a resolved one.
* **Adoption keeps the adopted watermark.** The orphan's resume offsets travel with its
  segments (``starts``), so records it had already committed are not replayed — rows deleted
  since stay deleted. The adopter saves its own state (with the new ids) *before* moving the
  files: a kill at any point leaves either the orphan or the adopter responsible, never neither.
* **Fail-open start-up.** A folder that cannot be created, a lock that fails for any reason
  other than "held by a live process" (ENOLCK / EOPNOTSUPP on NFS or FUSE), or every slot
  taken raise :class:`SlotError`; the queue then runs memory-only and health says why. The
  search for a free slot is bounded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Pos = tuple[int, int]  # (segment id, byte offset), as in ._item

log = logging.getLogger("memory.queue")

STATE_FILE = "state.json"
LOCK_FILE = "lock"
MAX_SLOTS = 256


class SlotError(OSError):
    """The queue folder cannot hold a journal for this process (the queue runs memory-only)."""


MAX_SEGMENT_ID = 10**15  # ids above this in a state file are absurd: the state counts as lost


def open_new(path: Path) -> int:
    """A fresh regular file at ``path`` for writing: whatever sat there (a FIFO, a symlink, an old
    temporary file) is removed first, and the file is created exclusively, never followed."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def atomic_write_json(path: Path, data: Any, fsync: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(open_new(tmp), "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_regular(path: Path, limit: int = 16 << 20) -> str:
    """A small regular file's text. A FIFO, device or symlink put there never blocks or redirects
    start-up: it raises OSError, and the state counts as lost (replay covers it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise OSError(errno.EINVAL, f"{path} is not a small regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit).decode("utf-8")
    finally:
        os.close(fd)


def _int_map(raw: Any) -> dict[int, int]:
    """Segment id -> non-negative int; entries that are not plausible are left out (rescanned)."""
    out: dict[int, int] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            with contextlib.suppress(TypeError, ValueError):
                seg, n = int(k), int(v)
                if 0 < seg < MAX_SEGMENT_ID and 0 <= n < 1 << 62:
                    out[seg] = n
    return out


@dataclasses.dataclass
class SlotState:
    """What a slot remembers across runs (``state.json``). Unreadable or missing → empty.

    * ``watermark``: oldest unresolved position; every segment below it is resolved;
    * ``next_segment``: every segment id ever used in the slot is below it;
    * ``starts``: resume offset of segments that begin mid-way (adopted ones; the watermark's);
    * ``counts``: valid records from the resume offset to the end of sealed, unresolved segments
      (so a restart need not rescan the backlog before replaying it);
    * ``lifetime``: counters summed over every run of the slot.
    """

    watermark: Pos | None = None
    next_segment: int = 1
    starts: dict[int, int] = dataclasses.field(default_factory=dict)
    counts: dict[int, int] = dataclasses.field(default_factory=dict)
    lifetime: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, slot_dir: Path) -> SlotState:
        try:
            data = json.loads(_read_regular(slot_dir / STATE_FILE))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        mark: Pos | None = None
        raw = data.get("watermark")
        if isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in raw):
            mark = (raw[0], raw[1])
        nxt = data.get("next_segment")
        nxt = nxt if isinstance(nxt, int) and not isinstance(nxt, bool) else 1
        if not 0 < nxt < MAX_SEGMENT_ID or (mark is not None and not (0 < mark[0] < MAX_SEGMENT_ID
                                                                       and 0 <= mark[1] < 1 << 62)):
            # Absurd values: a state that cannot be right is no state (everything is replayed,
            # idempotently) — never a reason to skip or misname a segment.
            log.warning("ignoring implausible queue state in %s", slot_dir)
            return cls()
        if mark is not None:
            nxt = max(nxt, mark[0] + 1)  # states written before next_segment existed
        lifetime = data.get("lifetime")
        return cls(mark, max(1, nxt), _int_map(data.get("starts")), _int_map(data.get("counts")),
                   dict(lifetime) if isinstance(lifetime, dict) else {})

    def to_json(self) -> dict[str, Any]:
        return {"watermark": list(self.watermark) if self.watermark else None, "next_segment": self.next_segment,
                "starts": {str(k): v for k, v in self.starts.items()},
                "counts": {str(k): v for k, v in self.counts.items()}, "lifetime": self.lifetime,
                "pid": os.getpid()}

    def save(self, slot_dir: Path) -> None:
        atomic_write_json(slot_dir / STATE_FILE, self.to_json())


def try_lock(path: Path) -> int | None:
    """An fd holding ``path/lock`` exclusively, None if a live process holds it.

    Raises :class:`SlotError` when the folder or lock cannot be used at all: that is not "taken"
    (looping on to the next slot would create slot folders forever).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise SlotError(exc.errno, f"cannot use queue slot {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise SlotError(exc.errno, f"cannot lock queue slot {path}: {exc.strerror or exc}") from exc
    return fd


class Slot:
    """A claimed slot folder, exclusively ours while ``lock`` is held."""

    def __init__(self, root: Path, path: Path, lock_fd: int) -> None:
        self.root, self.path, self._lock_fd = root, path, lock_fd

    @classmethod
    def claim(cls, root: Path, max_slots: int = MAX_SLOTS) -> Slot:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SlotError(exc.errno, f"cannot create queue folder {root}: {exc.strerror or exc}") from exc
        for n in range(max_slots):
            candidate = root / f"slot-{n}"
            fd = try_lock(candidate)
            if fd is not None:
                return cls(root, candidate, fd)
        raise SlotError(errno.EBUSY, f"all {max_slots} queue slots under {root} are held by live processes")

    @property
    def held(self) -> bool:
        return self._lock_fd >= 0

    def orphans(self) -> Iterator[Path]:
        """Slot folders no live process holds, each locked by us while the caller handles it."""
        try:
            others = sorted(p for p in self.root.glob("slot-*") if p != self.path and p.is_dir())
        except OSError as exc:
            log.warning("cannot list queue folder %s: %s", self.root, exc)
            return
        for other in others:
            try:
                fd = try_lock(other)
            except SlotError as exc:
                log.warning("cannot check leftover queue slot %s: %s", other, exc)
                continue
            if fd is None:
                continue  # a live process owns it
            try:
                yield other
            finally:
                os.close(fd)

    def release(self) -> None:
        """Give the slot up (only once its writer has stopped)."""
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def abandon(self) -> None:
        """Drop our descriptor without any other effect (a forked child letting go of the parent's
        slot: the lock stays held through the parent's descriptor)."""
        self.release()
