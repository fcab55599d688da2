"""The memory window: the newest unresolved records held in RAM.

It serves two readers: the writer, which takes batches from its front when the read position
reaches it (no disk read for records still in memory), and the service's read-your-writes,
which needs a consistent view of everything pending.

Invariants, all owned here:

* records are kept in append order, and every record has a sequence number one above the
  previous one's, so "trim everything up to record n" is arithmetic, done in one locked step —
  never a loop of pops that a concurrent append (which may evict from the same end) could
  interleave with and turn into a loss of pending records;
* at most ``capacity`` records; the oldest is evicted (it is still on disk, the writer reads it
  back from its segment);
* storage is a list of fixed-size chunks that are only ever appended to, so :meth:`snapshot`
  copies a few chunk references under the lock and the caller iterates *outside* it: a read
  never holds up appends for longer than it takes to copy ~40 pointers.

Every method except :meth:`snapshot` expects the caller to hold the queue's lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._item import Item, Pos

CHUNK = 256


class Snapshot:
    """A stable view of the window at one instant; iterate it without any lock."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[tuple[list[Item], int, int]]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[Item]:
        for chunk, start, stop in self._parts:
            # A chunk is only ever appended to, so the items below ``stop`` are exactly the
            # ones that were there when the snapshot was taken.
            for i in range(start, stop):
                yield chunk[i]

    def __len__(self) -> int:
        return sum(stop - start for _, start, stop in self._parts)


class MemoryWindow:
    """Bounded FIFO of :class:`Item` with O(1) append/evict and O(chunks) trim and snapshot."""

    __slots__ = ("capacity", "_chunks", "_head", "_len", "_next_n")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._chunks: list[list[Item]] = []
        self._head = 0  # index of the first live item in _chunks[0]
        self._len = 0
        self._next_n = 1

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def append(self, item: Item) -> None:
        """Add ``item`` (its sequence number is assigned here); evict the oldest beyond capacity."""
        item.n = self._next_n
        self._next_n += 1
        chunks = self._chunks
        if not chunks or len(chunks[-1]) == CHUNK:
            chunks.append([])
        chunks[-1].append(item)
        self._len += 1
        if self._len > self.capacity:
            self._drop(1)

    def _drop(self, count: int) -> None:
        count = min(count, self._len)
        self._len -= count
        head = self._head + count
        chunks = self._chunks
        while chunks and head >= len(chunks[0]):  # only ever true for the last chunk when empty
            head -= len(chunks[0])
            del chunks[0]
        self._head = head if chunks else 0

    def first(self) -> Item | None:
        if not self._len:
            return None
        return self._chunks[0][self._head]

    def take(self, n: int) -> list[Item]:
        """The first ``n`` records (not removed)."""
        out: list[Item] = []
        start = self._head
        for chunk in self._chunks:
            if len(out) >= n:
                break
            part = chunk[start:start + n - len(out)]
            out += part
            start = 0
        return out

    def trim_through(self, n: int) -> int:
        """Drop every record with sequence number <= ``n`` (one step, under the caller's lock)."""
        first = self.first()
        if first is None or n < first.n:
            return 0
        count = min(self._len, n - first.n + 1)
        self._drop(count)
        return count

    def drop_before(self, pos: Pos) -> int:
        """Drop records positioned before ``pos`` (already written: a trim that was cut short)."""
        dropped = 0
        while self._len and self._chunks[0][self._head].pos < pos:
            self._drop(1)
            dropped += 1
        return dropped

    def clear(self) -> None:
        self._chunks, self._head, self._len = [], 0, 0

    def snapshot(self) -> Snapshot:
        """Chunk references and bounds; the caller holds the lock only for this copy."""
        parts: list[tuple[list[Item], int, int]] = []
        remaining = self._len
        start = self._head
        for chunk in self._chunks:
            if remaining <= 0:
                break
            stop = min(len(chunk), start + remaining)
            parts.append((chunk, start, stop))
            remaining -= stop - start
            start = 0
        return Snapshot(parts)
