"""Accounting of the write path: the ledger of counters, backlog counting, reconciliation, reports.

``accepted = committed + dead-lettered + dropped + pending``. The :class:`Ledger` owns every
counter and the per-segment bookkeeping that turns records destroyed by corruption into a
counted loss; :func:`check` proves the equation by counting pending records where they really
are (journal files past the read position, the retry list, memory-only records) instead of
deriving them from the other counters. Both read the queue only through :class:`QueueView`, a
frozen copy the queue hands out — never its private fields.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._item import Item, Pos
from ._segments import FRAME_LEN, HEADER_LEN, Damage, read_segment

if TYPE_CHECKING:
    from ._journal import Journal


class Ledger:
    """Every counter of one run. Mutations happen under the queue's lock (``lock``).

    ``expected[seg]`` counts records known to be in a segment (appended by us, or counted in an
    earlier run's or an adopted segment); ``seen[seg]`` those the writer has taken from it. When
    the read position leaves a segment, any difference is records destroyed by corruption.
    """

    __slots__ = ("lock", "accepted", "committed", "dead_lettered", "recovered", "dropped", "expected", "seen")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.accepted = self.committed = self.dead_lettered = self.recovered = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self.expected: dict[int, int] = {}
        self.seen: dict[int, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def add_backlog(self, per_segment: dict[int, int]) -> int:
        """Records earlier runs (or adopted slots) left: accepted and pending from now on."""
        n = sum(per_segment.values())
        with self.lock:
            for seg, valid in per_segment.items():
                self.expected[seg] = self.expected.get(seg, 0) + valid
            self.accepted += n
            self.recovered += n
        return n

    def saw(self, batch: list[Item]) -> None:
        seen = self.seen
        with self.lock:
            if batch and batch[0].seg == batch[-1].seg >= 0:
                seen[batch[0].seg] = seen.get(batch[0].seg, 0) + len(batch)  # the common case, O(1)
            else:
                for it in batch:
                    if it.seg >= 0:
                        seen[it.seg] = seen.get(it.seg, 0) + 1

    def passed(self, pos: Pos) -> dict[int, int]:
        """The read position reached ``pos``: settle segments before it. Returns losses by segment."""
        lost: dict[int, int] = {}
        with self.lock:
            for seg in [s for s in self.expected if s < pos[0]]:
                n = self.expected.pop(seg, 0) - self.seen.pop(seg, 0)
                if n > 0:
                    self.dropped["corrupt"] += n
                    lost[seg] = n
        return lost

    def remaining(self, seg: int) -> int | None:
        """Records of ``seg`` not yet taken by the writer (None if unknown)."""
        with self.lock:
            if seg not in self.expected:
                return None
            return self.expected[seg] - self.seen.get(seg, 0)

    def sealed_counts(self, after: int, active: int) -> dict[int, int]:
        with self.lock:
            return {seg: n for seg, n in self.expected.items() if seg > after and seg != active}

    def pending(self) -> int:
        with self.lock:
            return max(0, self.accepted - self.committed - self.dead_lettered - sum(self.dropped.values()))


@dataclasses.dataclass(frozen=True)
class QueueView:
    """A consistent copy of what the queue holds, taken under its lock."""

    accepted: int
    committed: int
    dead_lettered: int
    recovered: int
    dropped: dict[str, int]
    memory: int
    volatile: int
    retrying: int
    position: Pos
    watermark: Pos
    max_in_memory: int
    max_dump_backups: int
    state_dirty: bool


def count_records(journal: Journal, start: Pos, below: int | None = None) -> dict[int, int]:
    """Valid records per segment from ``start`` to the head (or to segment ``below``)."""
    counts: dict[int, int] = {}
    seg0, off0 = start
    for seg in journal.segments():
        if seg < seg0 or (below is not None and seg >= below):
            continue
        live = journal.live_end(seg)
        pos = max(off0 if seg == seg0 else journal.start_of(seg), HEADER_LEN)
        path = journal.path_of(seg)
        while True:
            try:
                found, new = read_segment(path, seg, pos, live, 100_000, final=live is None,
                                          zero_tail_ok=seg in journal.unsealed)
            except OSError:
                break
            counts[seg] = counts.get(seg, 0) + sum(1 for f in found if not isinstance(f, Damage))
            if not found or new == pos:
                break
            pos = new
    return counts


def backlog_counts(journal: Journal, pos: Pos, saved: dict[int, int], segments: Iterable[int]) -> dict[int, int]:
    """Records per segment that earlier runs (or adopted slots) left in ``segments`` from ``pos`` on.

    A segment whose count was saved with the state (relative to its resume offset) is not
    scanned; only segments without a saved count are (a crashed run's active one, a partly
    resolved first one). Scanning the whole backlog would hold up the replay for as long as the
    backlog is large — in a crash loop, forever.
    """
    counts: dict[int, int] = {}
    for seg in segments:
        if seg < pos[0]:
            continue
        start = pos[1] if seg == pos[0] else journal.start_of(seg)
        room = max(0, journal.sizes.get(seg, 0) - start) // (FRAME_LEN + 1)  # the most it can hold
        if seg in saved and 0 <= saved[seg] <= room:  # a count that cannot be true is recounted
            counts[seg] = saved[seg]
        else:
            start = pos if seg == pos[0] else (seg, journal.start_of(seg))
            counts[seg] = count_records(journal, start, below=seg + 1).get(seg, 0)
    return counts


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def check(view: QueueView, journal: Journal) -> list[str]:
    """Problems found reconciling ``view`` with the files; empty when all is accounted for."""
    problems: list[str] = []
    dropped = sum(view.dropped.values())
    unresolved = sum(count_records(journal, view.position).values()) + view.retrying + view.volatile
    resolved = view.committed + view.dead_lettered + dropped
    if view.accepted != resolved + unresolved:
        problems.append(f"accounting: accepted {view.accepted} != committed {view.committed} + dead "
                        f"{view.dead_lettered} + dropped {dropped} + pending {unresolved}")
    if view.memory > view.max_in_memory:
        problems.append(f"memory window holds {view.memory} > max_in_memory {view.max_in_memory}")
    with journal.lock:
        sizes = dict(journal.sizes)
        total, active, mapped, capacity = journal.total, journal.active, journal.map is not None, journal.capacity
        unsealed = set(journal.unsealed)
    if total != sum(sizes.values()):
        problems.append(f"journal size counter {total} != sum of segment sizes {sum(sizes.values())}")
    if total > journal.max_disk_bytes:
        problems.append(f"journal holds {total} bytes > max_disk_mb ({journal.max_disk_bytes} bytes)")
    for seg, size in sizes.items():
        real = file_size(journal.path_of(seg))
        if seg == active and mapped:
            size = capacity  # preallocated; the used part is tracked separately
        if real != size and seg not in unsealed:
            # The writer may have deleted the segment (resolved) since the snapshot: it stops
            # tracking a segment under the lock before it unlinks the file, so a second look
            # under the lock tells a deleted segment from a damaged one.
            with journal.lock:
                if seg not in journal.sizes or seg in journal.unsealed:
                    continue
                size = journal.capacity if seg == journal.active and journal.map is not None else journal.sizes[seg]
                real = file_size(journal.path_of(seg))
            if real != size:
                problems.append(f"segment {seg}: tracked {size} bytes, file has {real}")
    stale = [s for s in sizes if s < view.watermark[0] and s != active]
    if len(stale) > view.max_dump_backups and not view.state_dirty:
        problems.append(f"resolved segments not deleted: {stale}")
    return problems


def stats(view: QueueView, journal: Journal) -> dict[str, Any]:
    """Every counter of the write path, for health() and ``memory queue status``."""
    pending = max(0, view.accepted - view.committed - view.dead_lettered - sum(view.dropped.values()))
    in_memory = view.memory + view.volatile + view.retrying
    return {
        "accepted": view.accepted, "committed": view.committed, "dead_lettered": view.dead_lettered,
        "dropped": dict(view.dropped), "pending": pending, "pending_memory": in_memory,
        "pending_disk": max(0, pending - in_memory), "recovered": view.recovered,
        "disk_bytes": journal.disk_bytes(), "journal_bytes": journal.total, "segments": len(journal.segments()),
        "journal": "memory-only" if journal.memory_only else "ok",
        "journal_problem": journal.reason or None,
    }
