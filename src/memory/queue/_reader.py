"""Reading spilled and recovered records back from journal segments, quarantining damage."""

from __future__ import annotations

import logging
from pathlib import Path

from ._accounting import file_size
from ._item import Item, Pos, RateLimitedLog
from ._journal import Journal, quarantine
from ._segments import HEADER_LEN, Damage, read_header, read_segment

log = logging.getLogger("memory.queue")


def _all_zero(path: Path) -> bool:
    """True if the file holds nothing but zeros (preallocated, then killed before any write)."""
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                if chunk.strip(b"\x00"):
                    return False
        return True
    except OSError:
        return False


class SpillReader:
    """Reads the journal at the writer's read position; never raises on what it finds there."""

    def __init__(self, journal: Journal, root: Path, warn: RateLimitedLog) -> None:
        self.journal, self.root, self.warn = journal, root, warn
        self.quarantined = 0
        self._header_checked: set[int] = set()
        self._read_failures: dict[int, int] = {}

    def _next(self, seg: int, default: Pos | None) -> Pos | None:
        nxt = self.journal.next_segment(seg)
        return (nxt, self.journal.start_of(nxt)) if nxt is not None else default

    def _head(self) -> Pos:
        head = self.journal.head()
        return (head[0], HEADER_LEN) if head[0] == self.journal.active else head

    def read(self, pos: Pos, first_mem: Pos | None, room: int) -> tuple[list[Item], Pos | None]:
        """Up to ``room`` records from ``pos``, stopping at the memory window (``first_mem``).

        Returns the records and the position after them (None: nothing to move past).
        """
        seg, off = pos
        live = self.journal.live_end(seg)
        path = self.journal.path_of(seg)
        if live is None and not path.exists():
            return [], self._next(seg, None)
        if live is None and seg not in self._header_checked:
            self._header_checked.add(seg)
            if file_size(path) < HEADER_LEN or _all_zero(path):
                # Created by a run killed before it wrote the header: it never held a record.
                log.info("removing empty queue segment %s left by an interrupted start", path.name)
                self.journal.delete(seg)
                return [], self._next(seg, self._head())
            if read_header(path) is None:
                # A destroyed header costs only the header: the records behind it are still
                # framed and checksummed, so they are read like any others.
                self.quarantine_range(path, Damage(seg, 0, HEADER_LEN, "bad segment header"))
        limit = live
        if first_mem is not None and first_mem[0] == seg:
            limit = first_mem[1] if limit is None else min(limit, first_mem[1])
        try:
            found, new_off = read_segment(path, seg, max(off, HEADER_LEN), limit,
                                          room, final=live is None,
                                          zero_tail_ok=seg in self.journal.unsealed)
        except OSError as exc:
            fails = self._read_failures[seg] = self._read_failures.get(seg, 0) + 1
            self.warn.warning("read", "cannot read queue segment %s (attempt %d): %s", path.name, fails, exc)
            if fails < 3:
                return [], None
            # Unreadable for good: move it aside (counted) rather than let it block the queue.
            quarantine(self.root, path.name, source=path)
            self.quarantined += 1
            self.journal.delete(seg)
            return [], self._next(seg, self._head())
        items: list[Item] = []
        for entry in found:
            if isinstance(entry, Damage):
                self.quarantine_range(path, entry)
            else:
                items.append(Item(entry.seg, entry.offset, entry.end, entry.kind, entry.row))
        at_end = live is None and (new_off >= file_size(path))
        if at_end:
            return items, self._next(seg, (seg, new_off))
        return items, (seg, new_off) if new_off != off else None

    def quarantine_range(self, path: Path, damage: Damage) -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(damage.start)
                data = fh.read(damage.end - damage.start)
        except OSError:
            data = b""
        quarantine(self.root, f"{path.name}-{damage.start}-{damage.end}.bin", data=data)
        self.quarantined += 1
        self.warn.warning("corrupt", "queue segment %s: %s at bytes %d-%d quarantined; reading on",
                          path.name, damage.reason, damage.start, damage.end)
