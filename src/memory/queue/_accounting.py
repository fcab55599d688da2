"""Accounting of the write path: counting what the journal holds, reconciling, reporting.

``accepted = committed + dead-lettered + dropped + pending``. ``check()`` proves it by counting
pending records where they really are (journal files past the read position, the retry list,
memory-only records) instead of deriving them from the other counters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._segments import HEADER_LEN, Damage, read_segment

if TYPE_CHECKING:
    from ._journal import Journal
    from ._writer import WriteQueue


def count_records(journal: Journal, start: tuple[int, int], below: int | None = None) -> dict[int, int]:
    """Valid records per segment from ``start`` to the head (or to segment ``below``)."""
    counts: dict[int, int] = {}
    seg0, off0 = start
    for seg in journal.segments():
        if seg < seg0 or (below is not None and seg >= below):
            continue
        live = journal.live_end(seg)
        pos = max(off0 if seg == seg0 else HEADER_LEN, HEADER_LEN)
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


def backlog_counts(journal: Journal, pos: tuple[int, int], saved: dict[int, int],
                   saved_from: tuple[int, int] | None) -> dict[int, int]:
    """Records per segment that earlier runs left from ``pos`` on.

    Sealed segments' counts were saved with the state (``saved``, the first segment's counted
    from the watermark ``saved_from``); only a partly resolved first segment without a saved
    count and segments written after the last save (a crashed run's active one, adopted ones)
    are scanned. Scanning the whole backlog would hold up the replay for as long as the backlog
    is large — in a crash loop, forever.
    """
    counts: dict[int, int] = {}
    first = pos[0]
    for seg in journal.segments():
        if seg < first or seg >= journal.first_new:
            continue
        if seg in saved and (seg != first or saved_from == pos):
            counts[seg] = saved[seg]
        else:
            start = pos if seg == first else (seg, HEADER_LEN)
            counts[seg] = count_records(journal, start, below=seg + 1).get(seg, 0)
    return counts


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def check(q: WriteQueue) -> list[str]:
    """Problems found reconciling ``q``'s counters with its files; empty when all is accounted for."""
    problems: list[str] = []
    with q._lock:
        accepted, dropped = q.accepted, sum(q.dropped.values())
        side, vol, mem = len(q._side), len(q._volatile), len(q._mem)
        sizes = dict(q.journal.sizes)
        total = q.journal.total
    unresolved = sum(count_records(q.journal, q._pos).values()) + side + vol
    resolved = q.committed + q.dead_lettered + dropped
    if accepted != resolved + unresolved:
        problems.append(f"accounting: accepted {accepted} != committed {q.committed} + dead "
                        f"{q.dead_lettered} + dropped {dropped} + pending {unresolved}")
    if mem > q.cfg.max_in_memory:
        problems.append(f"memory window holds {mem} > max_in_memory {q.cfg.max_in_memory}")
    if total != sum(sizes.values()):
        problems.append(f"journal size counter {total} != sum of segment sizes {sum(sizes.values())}")
    for seg, size in sizes.items():
        real = file_size(q.journal.path_of(seg))
        if seg == q.journal.active and q.journal.map is not None:
            size = q.journal.capacity  # preallocated; the used part is tracked separately
        if real != size:
            problems.append(f"segment {seg}: tracked {size} bytes, file has {real}")
    mark = q.watermark()
    stale = [s for s in sizes if s < mark[0] and s != q.journal.active]
    if len(stale) > q.cfg.max_dump_backups and not q._state_dirty:
        problems.append(f"resolved segments not deleted: {stale}")
    return problems


def stats(q: WriteQueue) -> dict[str, Any]:
    """Every counter of the write path, for health() and ``memory queue status``."""
    with q._lock:
        mem, vol, side = len(q._mem), len(q._volatile), len(q._side)
        dropped = dict(q.dropped)
        accepted = q.accepted
        disk = q.journal.allocated
        segs = len(q.journal.sizes)
    pending = max(0, accepted - q.committed - q.dead_lettered - sum(dropped.values()))
    return {
        "accepted": accepted, "committed": q.committed, "dead_lettered": q.dead_lettered,
        "dropped": dropped, "pending": pending, "pending_memory": mem + vol + side,
        "pending_disk": max(0, pending - mem - vol - side), "recovered": q.recovered,
        "quarantined": q.quarantined, "disk_bytes": disk, "segments": segs,
        "breaker_open": q.breaker.is_open, "consecutive_failures": q.breaker.failures,
        "last_error": q.breaker.last_error, "slot": str(q.slot.path),
        "lifetime": q.lifetime_totals(),
    }
