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
from .._records import EVENT, FINISH, TURN
from ..store import Store
from ._deadletter import KIND_NAMES, DeadLetter
from ._journal import DEAD_LETTER_FILE, LOCK_FILE, QUARANTINE_DIR, load_state
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
        state = load_state(slot)
        slots.append({"slot": slot.name, "live": _is_live(slot), "segments": len(segs),
                      "bytes": sum(b for _, b in segs), "watermark": state.get("watermark"),
                      "lifetime": state.get("lifetime", {})})
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
    """
    dl = DeadLetter(root / DEAD_LETTER_FILE, 1 << 62)
    keep: list[dict[str, Any]] = []
    done = 0
    with contextlib.suppress(StoreError):
        store.initialize()
    for entry in dl.entries():
        row = tuple(entry["row"])
        kind = entry["kind"]
        try:
            missing = store.write_batch([row] if kind == EVENT else [], [row] if kind == TURN else [],
                                        [row] if kind == FINISH else [])
            if missing:
                raise StoreError("turn not found")
            done += 1
        except StoreError as exc:
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            entry["last_error"] = f"requeue: {exc}"
            keep.append(entry)
    dl.rewrite(keep)
    return {"requeued": done, "remaining": len(keep)}


def purge(root: Path) -> int:
    dl = DeadLetter(root / DEAD_LETTER_FILE, 1 << 62)
    n = sum(1 for _ in dl.entries())
    if dl.path.exists():
        dl.rewrite([])
    return n


def describe(entry: dict[str, Any]) -> str:
    row = entry.get("row") or ["?"]
    return f"{KIND_NAMES.get(entry.get('kind'), '?')} {row[0]}: {entry.get('reason')} " \
           f"after {entry.get('attempts')} attempts — {entry.get('last_error')}"
