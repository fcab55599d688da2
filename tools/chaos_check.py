"""The chaos run's checker: acknowledged ids against the database and the dead-letter file.

Every process wrote the ids it saw acknowledged to its own ack file (see ``chaos_actor``). The
checker reads them one file at a time (a soak acknowledges millions of records) and asks the
database about each file's ids, so memory stays bounded by one file. It also measures the queue
folder's disk use and the preallocated space that crashed runs left behind.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ID = re.compile(r"[0-9a-f]{26}")
PREFIX = re.compile(r"[0-9a-f]*")
MB = 1024 * 1024
SEG = re.compile(r"seg-\d{12}\.log")


# -- ack files ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Acks:
    """What one process saw acknowledged."""

    name: str
    events: dict[str, bool] = dataclasses.field(default_factory=dict)   # id -> poison
    turns: set[str] = dataclasses.field(default_factory=set)
    finishes: set[str] = dataclasses.field(default_factory=set)        # turn ids finished "ok"
    fragile: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (kind, id, why)
    torn: list[tuple[str, str]] = dataclasses.field(default_factory=list)          # (kind, id prefix)

    @property
    def count(self) -> int:
        return len(self.events) + len(self.turns) + len(self.finishes) + len(self.fragile) + len(self.torn)


def parse_acks(path: Path) -> Acks:
    """One ack file. A SIGKILL can cut the last line short (a write stops at a page boundary when
    a fatal signal is pending); that record *was* acknowledged, so its id prefix is kept as torn."""
    acks = Acks(path.stem)
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("e", "t", "f", "E", "T", "F"):
            continue  # a marker line
        kind, rid = parts[0], parts[1] if len(parts) > 1 else ""
        complete = ID.fullmatch(rid) is not None and len(parts) >= 3 and parts[2] in ("0", "1")
        if complete and kind.isupper() and len(parts) == 4:
            acks.fragile.append((kind.lower(), rid, parts[3]))
        elif complete and kind.islower() and len(parts) == 3:
            if kind == "e":
                acks.events[rid] = parts[2] == "1"
            elif kind == "t":
                acks.turns.add(rid)
            else:
                acks.finishes.add(rid)
        elif kind.islower() and kind != "f":
            prefix = PREFIX.match(rid).group(0)  # type: ignore[union-attr]
            if len(prefix) >= 12:
                acks.torn.append((kind, prefix))
        # a torn "f" line or a torn fragile line: nothing to hold the service to
    return acks


def ack_files(ack_root: Path) -> list[Path]:
    return sorted(ack_root.rglob("*.log"))


# -- the database -------------------------------------------------------------------------------------------
class Db:
    """Read-only questions to the database, chunked so a soak's millions of ids fit."""

    def __init__(self, dsn: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(dsn)

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        from sqlalchemy import bindparam, text

        stmt = text(sql)
        if params and any(isinstance(v, (list, tuple)) for v in params.values()):
            stmt = stmt.bindparams(*(bindparam(k, expanding=True) for k, v in params.items()
                                     if isinstance(v, (list, tuple))))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt, params or {})]

    def existing(self, table: str, col: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            found.update(r[0] for r in self._rows(f"SELECT {col} FROM {table} WHERE {col} IN :ids",
                                                   {"ids": list(ids[i:i + 500])}))
        return found

    def unfinished(self, turn_ids: Sequence[str]) -> set[str]:
        """Turns among ``turn_ids`` present but not finished ``ok``."""
        bad: set[str] = set()
        for i in range(0, len(turn_ids), 500):
            bad.update(r[0] for r in self._rows(
                "SELECT turn_id FROM turns WHERE turn_id IN :ids AND (status <> 'ok' OR finished_at IS NULL)",
                {"ids": list(turn_ids[i:i + 500])}))
        return bad

    def with_prefix(self, table: str, col: str, prefix: str) -> bool:
        # ids are lower-case hex: every id with this prefix sorts between it and prefix + "~"
        return bool(self._rows(f"SELECT {col} FROM {table} WHERE {col} >= :lo AND {col} < :hi LIMIT 1",
                               {"lo": prefix, "hi": prefix + "~"}))

    def count(self, table: str, where: str = "") -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM {table} {where}")[0][0])

    def close(self) -> None:
        self.engine.dispose()


# -- dead letters ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DeadLetters:
    by_key: dict[str, dict[str, Any]]
    repeated: int        # the same record written twice
    malformed: int
    without_reason: list[str]
    not_poison: list[str]  # rows the database had no reason to reject

    def has(self, kind: str, rid: str) -> bool:
        return f"{kind}:{rid}" in self.by_key

    def has_prefix(self, kind: str, prefix: str) -> bool:
        return any(k.startswith(f"{kind}:{prefix}") for k in self.by_key)


KIND_LETTER = {1: "e", 2: "t", 3: "f"}


def read_dead_letters(path: Path) -> DeadLetters:
    by_key: dict[str, dict[str, Any]] = {}
    repeated = malformed = 0
    no_reason: list[str] = []
    not_poison: list[str] = []
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
            key = f"{KIND_LETTER[entry['kind']]}:{entry['row'][0]}"
        except (ValueError, KeyError, TypeError, IndexError):
            malformed += 1
            continue
        if key in by_key and entry["kind"] != 3:
            repeated += 1
        by_key[key] = entry
        if not str(entry.get("reason") or "").strip() or not str(entry.get("last_error") or "").strip():
            no_reason.append(key)
        if entry["kind"] != 1 or "poison" not in json.dumps(entry["row"]):
            not_poison.append(key)
    return DeadLetters(by_key, repeated, malformed, no_reason, not_poison)


# -- the verdict on the data --------------------------------------------------------------------------------------
def verify(dsn: str, ack_root: Path, queue_dir: Path) -> dict[str, Any]:
    """Every acknowledged record: in the database exactly once, or dead-lettered with a reason."""
    dead = read_dead_letters(queue_dir / "dead-letter.jsonl")
    db = Db(dsn)
    out: collections.Counter[str] = collections.Counter()
    lost: list[str] = []
    nodes: dict[str, str] = {}
    node_clash: list[str] = []
    fragile: collections.Counter[str] = collections.Counter()
    lost_by_file: dict[str, int] = {}
    lost_before = 0
    try:
        for path in ack_files(ack_root):
            acks = parse_acks(path)
            out["files"] += 1
            for rid in (*acks.events, *acks.turns):
                node = rid[16:]
                owner = nodes.setdefault(node, acks.name)
                if owner != acks.name:
                    node_clash.append(f"{rid} ({owner} and {acks.name})")
                    break
            ev = list(acks.events)
            ev_db = db.existing("events", "event_id", ev)
            tu_db = db.existing("turns", "turn_id", list(acks.turns))
            out["events"] += len(ev)
            out["turns"] += len(acks.turns)
            out["finishes"] += len(acks.finishes)
            out["found_events"] += len(ev_db)
            out["found_turns"] += len(tu_db)
            for rid, poison in acks.events.items():
                if poison and rid in ev_db:
                    out["poison_in_db"] += 1
                elif rid not in ev_db and not dead.has("e", rid):
                    lost.append(f"event {rid} ({acks.name}{', poison' if poison else ''})")
                elif rid in ev_db and dead.has("e", rid):
                    out["dead_and_in_db"] += 1
            lost += [f"turn {t} ({acks.name})" for t in acks.turns if t not in tu_db and not dead.has("t", t)]
            done = [t for t in acks.finishes if t in tu_db]
            bad = db.unfinished(done)
            out["finish_lost"] += len(bad) + sum(1 for t in acks.finishes if t not in tu_db)
            for kind, prefix in acks.torn:
                table, col = ("events", "event_id") if kind == "e" else ("turns", "turn_id")
                out["torn"] += 1
                if db.with_prefix(table, col, prefix):
                    out[f"found_{table}"] += 1
                elif not dead.has_prefix(kind, prefix):
                    lost.append(f"{kind} {prefix}… (torn ack line, {acks.name})")
            for kind, rid, why in acks.fragile:
                fragile[why] += 1
                out["fragile"] += 1
                table, col = ("events", "event_id") if kind == "e" else ("turns", "turn_id")
                if kind != "f" and db.existing(table, col, [rid]):
                    out[f"found_{table}"] += 1
                    fragile[f"{why}_but_stored"] += 1
            if len(lost) != lost_before:
                lost_by_file[acks.name] = len(lost) - lost_before
            lost_before = len(lost)
        db_events, db_turns = db.count("events"), db.count("turns")
        poison_rows = db.count("events", "WHERE obs LIKE '%poison%'")
    finally:
        db.close()
    return {
        "acknowledged": out["events"] + out["turns"] + out["finishes"] + out["torn"] + out["fragile"],
        "events": out["events"], "turns": out["turns"], "finishes": out["finishes"],
        "torn_ack_lines": out["torn"], "ack_files": out["files"],
        "lost": len(lost), "lost_ids": lost[:10], "lost_by_file": dict(list(lost_by_file.items())[:20]),
        "lost_in_quarantine": _in_quarantine(queue_dir, lost[:200]), "finish_lost": out["finish_lost"],
        "duplicated": dead.repeated + out["dead_and_in_db"], "id_clashes": node_clash[:10],
        "dead_lettered": len(dead.by_key), "dead_letter_malformed": dead.malformed,
        "dead_without_reason": len(dead.without_reason), "wrongly_dead": len(dead.not_poison),
        "wrongly_dead_ids": dead.not_poison[:10],
        "poison_in_db": max(out["poison_in_db"], poison_rows),
        "not_durable": dict(fragile),
        # Rows nobody saw acknowledged: a process killed between the append's return and its
        # ack line. At most one event and one turn per killed process.
        "unacked_rows": {"events": db_events - out["found_events"], "turns": db_turns - out["found_turns"]},
    }


def _in_quarantine(queue_dir: Path, lost: list[str]) -> int:
    """How many of these lost records' ids appear in quarantined bytes (damage, not a silent loss)."""
    qdir = queue_dir / "quarantine"
    if not lost or not qdir.is_dir():
        return 0
    blobs = b"".join(p.read_bytes() for p in qdir.iterdir() if p.is_file() and p.stat().st_size < 64 * MB)
    return sum(1 for x in lost if x.split()[1].encode() in blobs)


# -- disk -----------------------------------------------------------------------------------------------------------
def du(path: Path) -> int:
    """Bytes the folder really occupies (allocated blocks, preallocated space included)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # removed while we looked (a slot adopted, a segment deleted)
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                else:
                    total += e.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def segments(queue_dir: Path) -> Iterator[Path]:
    for slot in sorted(queue_dir.glob("slot-*")):
        with_segs = sorted(p for p in slot.iterdir() if SEG.fullmatch(p.name)) if slot.is_dir() else []
        yield from with_segs


def _zero_tail(path: Path, size: int) -> int:
    """Length of the all-zero tail of a preallocated segment (space never written)."""
    step = 1 << 20
    tail = 0
    with open(path, "rb") as fh:
        end = size
        while end > 16:
            start = max(16, end - step)
            fh.seek(start)
            chunk = fh.read(end - start)
            stripped = chunk.rstrip(b"\0")
            tail += len(chunk) - len(stripped)
            if stripped:
                break
            end = start
    return tail


class JournalUsage:
    """Allocated bytes, and the preallocated-but-unused space of never-trimmed segments."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int], int] = {}

    def measure(self, queue_dir: Path) -> dict[str, int]:
        allocated = waste = unsealed = count = 0
        cache: dict[tuple[int, int, int], int] = {}
        for seg in segments(queue_dir):
            try:
                st = seg.stat()
                with open(seg, "rb") as fh:
                    head = fh.read(16)
            except OSError:
                continue
            count += 1
            allocated += st.st_blocks * 512
            capacity = int.from_bytes(head[8:16], "little") if head[:8] == b"MEMQSEG1" else -1
            if capacity == st.st_size:  # never trimmed: its run was killed (or is still running)
                unsealed += 1
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if key not in self._cache:
                    try:
                        self._cache[key] = _zero_tail(seg, st.st_size)
                    except OSError:
                        self._cache[key] = 0
                cache[key] = self._cache[key]
                waste += cache[key]
        self._cache = cache
        return {"segments": count, "unsealed": unsealed, "allocated": allocated, "waste": waste}


def leftovers(queue_dir: Path) -> dict[str, Any]:
    """What the queue folder still holds after the final drain."""
    segs = [f"{p.parent.name}/{p.name} ({p.stat().st_size} B)" for p in segments(queue_dir)]
    quarantine = queue_dir / "quarantine"
    q_files = sorted(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else []
    return {"segments_left": segs, "quarantine_files": len(q_files), "quarantine_sample": q_files[:5]}


def orphaned_spawn(traceback: str) -> bool:
    """A ``spawn`` child whose parent was killed before it handed the child its work: Python's own
    start-up (``spawn_main`` reading the preparation data from the parent's pipe) hits end of file
    and prints a traceback before the child imported anything of ours. The chaos kills parents on
    purpose, so this is the scenario, not a failure of memory."""
    return ("multiprocessing/spawn.py" in traceback and "pickle.load(from_parent)" in traceback
            and "EOFError" in traceback and "memory" not in traceback.replace("multiprocessing", ""))


def stderr_problems(paths: Iterable[Path]) -> dict[str, Any]:
    """Tracebacks and fatal errors the processes printed (their logging warnings are expected);
    ``orphaned_spawns`` counts the tracebacks of spawn children orphaned at start (not problems)."""
    found: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    orphaned = 0
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for marker in ("Traceback (most recent call last)", "Fatal Python error", "Exception ignored"):
            at = text.find(marker)
            while at >= 0:
                nxt = text.find(marker, at + 1)
                block = text[at:nxt if nxt >= 0 else len(text)][:4000]
                if marker.startswith("Traceback") and orphaned_spawn(block):
                    orphaned += 1
                else:
                    if not found[marker]:  # one sample of each kind
                        samples.append(f"{path.name}: {block[:1500]}")
                    found[marker] += 1
                at = nxt
    return {"counts": dict(found), "samples": samples, "orphaned_spawns": orphaned}


def tail(path: Path, n: int = 1500) -> str:
    """What a process printed: from its first fatal error or traceback, else its last lines."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    for marker in ("Fatal Python error", "Traceback (most recent call last)"):
        if marker in text:
            at = text.index(marker)
            return text[at:at + n]
    return text[-n:]


def trace_slots(queue_dir: Path, out: Path) -> None:
    """Every slot's state.json and segments after a cycle (``--trace``: to follow a lost record)."""
    slots: dict[str, Any] = {}
    for slot in sorted(queue_dir.glob("slot-*")):
        try:
            state = json.loads((slot / "state.json").read_text())
        except (OSError, ValueError):
            state = None
        segs = {p.name: p.stat().st_size for p in sorted(slot.glob("seg-*.log"))}
        slots[slot.name] = {"state": state, "segments": segs}
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(slots, indent=1))
