"""Where a writer starts: the slot's journal (or memory-only), and the read position to resume at.

A new :class:`~._writer.WriteQueue` asks this module three things, in order:

* :func:`open_journal` — claim a slot, load its ``state.json``, open the journal and adopt the
  segments of dead processes' slots. A folder that cannot be used gives a memory-only
  :class:`~._journal.NullJournal` instead (records survive outages but not a crash): start-up
  never fails because of the queue folder.
* :func:`start_position` — delete the segments resolved before the last stop and pick the first
  position not yet resolved (the saved watermark, bounded by what the segment really holds).
* :func:`earlier_backlog` — on the writer thread, not in the constructor: how many records the
  segments of earlier runs (and adopted slots) still hold past that position, so the counters
  are exact from the first ``stats()``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .._config import FailureQueueConfig
from ._accounting import backlog_counts
from ._item import Pos
from ._journal import Journal, NullJournal
from ._segments import HEADER_LEN
from ._slot import Slot, SlotError, SlotState

log = logging.getLogger("memory.queue")


def open_journal(root: Path, cfg: FailureQueueConfig) -> tuple[Slot | None, SlotState, Journal]:
    """Claim a slot and open its journal; if the folder cannot be used, run memory-only.

    Returns the slot (None when memory-only), its saved state (as far as it could be read) and
    the journal.
    """
    try:
        slot = Slot.claim(root)
    except SlotError as exc:
        return None, SlotState(), _memory_only(str(exc))
    state = SlotState()
    try:
        state = SlotState.load(slot.path)
        journal = Journal(slot, state, int(cfg.max_dump_file_size_mb * 1024 * 1024),
                          cfg.fsync, int(cfg.max_disk_mb * 1024 * 1024))

        def save_intent() -> None:
            state.next_segment = journal.next_id
            state.starts = dict(journal.starts)
            state.save(slot.path)

        journal.adopt_orphans(state, save_intent)
        return slot, state, journal
    except OSError as exc:
        slot.release()
        return None, state, _memory_only(f"cannot open the journal in {root}: {exc}")


def _memory_only(reason: str) -> Journal:
    log.warning("failure queue runs memory-only (records survive outages but not a crash): %s", reason)
    return NullJournal(reason)


def start_position(journal: Journal, mark: Pos | None) -> Pos:
    """The read position after the last stop's watermark ``mark``; deletes the segments below it."""
    segs = journal.segments()
    if mark is not None:
        for seg in segs:
            # Resolved before the last stop. Segment ids only grow, above every saved
            # watermark, so nothing written (or adopted) since can sit below it.
            if seg < mark[0]:
                journal.delete(seg)
        segs = journal.segments()
        if segs and segs[0] == mark[0]:
            start = max(journal.start_of(mark[0]), mark[1])
            # A watermark past the segment's end cannot be right: replay the segment whole
            # (idempotent) rather than skip records it holds.
            journal.starts[mark[0]] = start if start <= journal.sizes.get(mark[0], 0) else HEADER_LEN
    return (segs[0], journal.start_of(segs[0])) if segs else (journal.next_id, HEADER_LEN)


def earlier_backlog(journal: Journal, state: SlotState, pos: Pos) -> dict[int, int]:
    """Records per segment that earlier runs (and adopted slots) left past ``pos``: the saved
    counts where ``state.json`` (or the adoption) has them, a scan of the segment otherwise."""
    earlier = [s for s in journal.segments() if s < journal.first_new]
    saved = dict(state.counts)
    saved.update({s: n for s, n in journal.adopted.items() if n is not None})
    return backlog_counts(journal, pos, saved, earlier)
