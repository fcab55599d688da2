"""Damaged queue folders: quarantined and counted, every intact record recovered, start-up fine."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from memory import MemoryService
from memory.queue._segments import HEADER_LEN, Record, read_segment

Make = Callable[..., MemoryService]


def dead_dsn() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"mysql+pymysql://root@127.0.0.1:{port}/x"


def spans(path: Path) -> list[tuple[int, int, str]]:
    found, _ = read_segment(path, 0, HEADER_LEN, None, 1_000_000, final=True)
    return [(r.offset, r.end, r.row[0]) for r in found if isinstance(r, Record)]


def test_damaged_folder_is_quarantined_and_the_rest_replayed(make_service: Make, tmp_path: Path) -> None:
    # 1. A run that could not reach its database leaves several sealed segments behind.
    svc = make_service(dead_dsn(), max_dump_file_size_mb=0.004)
    ids = [svc.append_event({"i": i, "pad": "p" * 40}, "s").event_id for i in range(300)]
    svc.close(timeout=0.1)
    slot = tmp_path / "queue" / "slot-0"
    segs = sorted(slot.glob("seg-*.log"))
    assert len(segs) >= 5
    layout = {p: spans(p) for p in segs}
    lost: set[str] = set()
    # 2. Damage: a flipped bit, a torn tail, a zero-filled tail, a header destroyed, junk files.
    a, b, c, d = segs[0], segs[1], segs[2], segs[3]
    start, end, rid = layout[a][len(layout[a]) // 2]
    raw = bytearray(a.read_bytes())
    raw[start + 12] ^= 0x10
    a.write_bytes(bytes(raw))
    lost.add(rid)
    start, end, rid = layout[b][-1]
    os.truncate(b, start + (end - start) // 2)
    lost.add(rid)
    start, end, rid = layout[c][-2]
    raw = bytearray(c.read_bytes())
    raw[start:] = bytes(len(raw) - start)
    c.write_bytes(bytes(raw))
    lost.update(r for s, _, r in layout[c] if s >= start)
    raw = bytearray(d.read_bytes())
    raw[:8] = b"GARBAGE!"  # costs the header only: its records are still framed and checksummed
    d.write_bytes(bytes(raw))
    (slot / "notes.txt").write_text("who put this here")
    (slot / "seg-000000009999.log").mkdir()  # unreadable as a file
    # 3. The next start, with a working database, quarantines the damage and replays the rest.
    again = make_service(f"sqlite:///{tmp_path / 'ok.db'}")
    assert again.flush(30)
    expected = set(ids) - lost
    assert again.store.existing_ids("events", ids) == expected
    assert again.store.count("events") == len(expected)
    stats = again.health()["queue"]
    assert stats["quarantined"] >= 6  # bit flip, torn tail, zero tail, bad header, 2 unknown files
    qfiles = list((tmp_path / "queue" / "quarantine").iterdir())
    assert len(qfiles) == stats["quarantined"]
    assert stats["recovered"] - stats["dropped"].get("corrupt", 0) == len(expected)
    # Sealed segments' record counts were saved, so records destroyed by the damage are counted.
    assert stats["recovered"] == len(ids) and stats["dropped"] == {"corrupt": len(lost)}
    assert not (slot / "notes.txt").exists()


def test_garbage_state_file_and_leftover_tmp_do_not_stop_start_up(make_service: Make, tmp_path: Path) -> None:
    svc = make_service(dead_dsn())
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(20)]
    svc.close(timeout=0.1)
    slot = tmp_path / "queue" / "slot-0"
    (slot / "state.json").write_text("{not json")
    (slot / "state.json.tmp").write_text("half")
    (tmp_path / "queue" / "dead-letter.jsonl").write_text("garbage line\n")
    again = make_service(f"sqlite:///{tmp_path / 'ok.db'}")
    assert again.flush(30)
    assert again.store.existing_ids("events", ids) == set(ids)


def test_segment_left_empty_by_an_interrupted_start(make_service: Make, tmp_path: Path) -> None:
    """A run killed between creating a segment and writing its header leaves an empty file."""
    svc = make_service(dead_dsn())
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(5)]
    svc.close(timeout=0.1)
    slot = tmp_path / "queue" / "slot-0"
    (slot / "seg-000000000050.log").write_bytes(b"")
    (slot / "seg-000000000051.log").write_bytes(b"MEMQ")  # a header cut short
    (slot / "seg-000000000052.log").write_bytes(bytes(8192))  # preallocated, killed before the header
    again = make_service(f"sqlite:///{tmp_path / 'ok.db'}")
    later = again.append_event({"after": True}, "s").event_id
    assert again.flush(30)
    assert again.store.existing_ids("events", [*ids, later]) == {*ids, later}
    assert again.health()["queue"]["quarantined"] == 0  # nothing to keep, and no loop counting it
    assert not any((slot / f"seg-0000000000{n}.log").exists() for n in (50, 51, 52))
