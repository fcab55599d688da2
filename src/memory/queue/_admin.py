"""Offline views and maintenance of a queue folder (used by ``memory queue`` / ``memory dead-letter``).

These read the folder as files; they never start a writer, so ``memory queue status`` is safe
to run next to a live service.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from .._errors import StoreError
from .._records import EDGE, EVENT, FINISH, KIND_NAMES, TOUCH, TURN
from ..store import Store
from ._deadletter import DeadLetter, record_key
from ._item import Item  # noqa: F401 - registers the edge record kind with the journal and dead letters
from ._journal import DEAD_LETTER_FILE, QUARANTINE_DIR
from ._slot import LOCK_FILE, SlotState
from ._segments import parse_segment_name


def _is_live(slot: Path) -> bool:
    try:
        fd = os.open(slot / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def inspect_queue(root: Path, dead_letter_max_bytes: int = 64 << 20) -> dict[str, Any]:
    """What the folder holds: slots (live or left behind), segments, dead letters, quarantine."""
    slots = []
    for slot in sorted(root.glob("slot-*")) if root.exists() else []:
        segs = [(s, (slot / n).stat().st_size) for n in os.listdir(slot)
                if (s := parse_segment_name(n)) is not None]
        state = SlotState.load(slot)
        slots.append({"slot": slot.name, "live": _is_live(slot), "segments": len(segs),
                      "bytes": sum(b for _, b in segs),
                      "watermark": list(state.watermark) if state.watermark else None,
                      "lifetime": state.lifetime})
    dl = DeadLetter(root / DEAD_LETTER_FILE, dead_letter_max_bytes)
    dead = list(dl.entries())
    qdir = root / QUARANTINE_DIR
    quarantined = sorted(p.name for p in qdir.iterdir()) if qdir.exists() else []
    return {"path": str(root), "slots": slots, "dead_letters": len(dead), "dead_letter_bytes": dl.size,
            "quarantined_files": quarantined,
            "disk_bytes": sum(s["bytes"] for s in slots) + dl.size}


def dead_letters(root: Path) -> list[dict[str, Any]]:
    return list(DeadLetter(root / DEAD_LETTER_FILE, 1 << 62).entries())


def requeue(root: Path, store: Store) -> dict[str, int]:
    """Try every dead letter against the database again, one at a time.

    Entries that commit leave the file; the others stay with one more attempt recorded. The
    database is written directly (idempotent by primary key), so running this twice is safe.
    The database calls run without the file lock; the file is then rewritten under it,
    re-read, so entries a live service dead-lettered meanwhile are kept.
    """
    dl = DeadLetter(root / DEAD_LETTER_FILE, 1 << 62)
    failed: dict[str, str] = {}
    done: set[str] = set()
    with contextlib.suppress(StoreError):
        store.initialize()
    for entry in list(dl.entries()):
        row = tuple(entry["row"])
        kind = entry["kind"]
        key = record_key(kind, row)
        try:
            missing = store.write_batch(
                [row] if kind == EVENT else [], [row] if kind == TURN else [], [row] if kind == FINISH else [],
                edges=[row] if kind == EDGE else [], touches=[row] if kind == TOUCH else [])
            if missing:
                raise StoreError("turn not found")
            done.add(key)
        except StoreError as exc:
            failed[key] = f"requeue: {exc}"

    def decide(entry: dict[str, Any]) -> dict[str, Any] | None:
        key = record_key(entry["kind"], entry["row"])
        if key in done:
            return None
        if key in failed:
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            entry["last_error"] = failed[key]
        return entry

    remaining = dl.rewrite(decide) if dl.path.exists() else 0
    return {"requeued": len(done), "remaining": remaining}


def purge(root: Path) -> int:
    """Delete every dead letter present now (under the file lock; nothing appended later is lost)."""
    dl = DeadLetter(root / DEAD_LETTER_FILE, 1 << 62)
    if not dl.path.exists():
        return 0
    removed = 0

    def drop(entry: dict[str, Any]) -> None:
        nonlocal removed
        removed += 1
        return None

    dl.rewrite(drop)
    return removed


def describe(entry: dict[str, Any]) -> str:
    row = entry.get("row") or ["?"]
    what = str(row[0])
    if entry.get("kind") == EDGE and len(row) >= 4:  # the record id says nothing: show the edge
        what = f"{row[1]} -[{row[3]}]-> {row[2]}" if row[2] is not None else f"remove {row[1]}"
    return f"{KIND_NAMES.get(entry.get('kind'), '?')} {what}: {entry.get('reason')} " \
           f"after {entry.get('attempts')} attempts — {entry.get('last_error')}"
