"""Crash loop: a child appends as fast as it can while the database flaps; SIGKILL at random.

After every kill a new child starts on the same folders (replaying what the last one left).
At the end a final run drains everything and a checker compares every id any child saw
acknowledged with the database and the dead-letter file: nothing may be lost, nothing counted
twice. Used by ``tests/test_crash_loop.py`` (20+ cycles) and ``tools/soak.py`` (1,000+).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CHILD = r"""
import json, os, random, sys
from memory import MemoryService
cfg, ack_path, seed = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
svc = MemoryService.from_config(cfg)
os.write(fd, b"# started\n")
i = 0
while True:
    poison = rng.random() < 0.003
    ev = svc.append_event({"i": i, "text": "poison" if poison else "fine", "pad": "x" * rng.randint(0, 400)},
                          "s%d" % (i % 7))
    os.write(fd, ("e %s %d\n" % (ev.event_id, poison)).encode())  # acknowledged: it must survive
    if i % 3 == 0:
        t = svc.append_turn("s%d" % (i % 7), ev.event_id)
        os.write(fd, ("t %s 0\n" % t.turn_id).encode())
        svc.finish_turn(t.turn_id, status="ok")
    i += 1
"""

Flapper = Callable[[random.Random, float], None]


def queue_config(dsn: str, root: Path) -> dict[str, Any]:
    return {
        "database": {"dsn": dsn, "connect_timeout": 1, "read_timeout": 3, "write_timeout": 3,
                     "sqlite_busy_timeout": 0.1},
        "vault": {"root_path": str(root / "vault"), "watch": False},
        "failure_queue": {"path": str(root / "queue"), "max_in_memory": 500, "spill_batch_size": 200,
                          "batch_size": 300, "max_dump_file_size_mb": 0.05, "max_retries": 2,
                          # far above what a soak writes: a drop at the disk bound is allowed (and
                          # counted), but the checker could not tell it from a loss
                          "max_disk_mb": 50_000,
                          "retry_base_delay_s": 0.02, "retry_max_delay_s": 0.2, "fsync": "never"},
        "logging": {"warn_interval_s": 60},
    }


def sqlite_flapper(db: Path) -> Flapper:
    """Hold an exclusive lock on the SQLite file for a random part of the child's life."""
    def flap(rng: random.Random, life: float) -> None:
        if rng.random() < 0.5:
            return

        def hold() -> None:
            time.sleep(rng.uniform(0, life))
            with contextlib.suppress(sqlite3.Error):
                conn = sqlite3.connect(db, isolation_level=None, timeout=5)
                conn.execute("BEGIN EXCLUSIVE")
                time.sleep(rng.uniform(0.05, life))
                conn.execute("ROLLBACK")
                conn.close()

        threading.Thread(target=hold, daemon=True).start()
    return flap


def install_poison_rule(dsn: str) -> None:
    from memory import load_config
    from memory.store import create_store

    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    store.initialize()
    if store.dialect == "sqlite":
        store.execute("CREATE TRIGGER IF NOT EXISTS poison BEFORE INSERT ON events WHEN NEW.obs LIKE "
                      "'%poison%' BEGIN SELECT RAISE(ABORT, 'poison row'); END")
    else:
        with contextlib.suppress(Exception):
            store.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (obs NOT LIKE '%poison%')")
    store.dispose()


ID = re.compile(r"[0-9a-f]{26}")


def read_acks(path: Path) -> tuple[dict[str, bool], set[str], list[tuple[str, str]]]:
    """Acknowledged ids. A SIGKILL can cut the child's own ack line short (a write that spans a
    page boundary stops at it when a fatal signal is pending); such a record *was* acknowledged,
    so its id prefix is returned as ``torn`` and must still be found in the database."""
    events: dict[str, bool] = {}
    turns: set[str] = set()
    torn: list[tuple[str, str]] = []
    if not path.exists():
        return events, turns, torn
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("e", "t"):
            continue  # a start marker
        rid = parts[1] if len(parts) > 1 else ""
        if len(parts) == 3 and ID.fullmatch(rid) and parts[2] in ("0", "1"):
            if parts[0] == "e":
                events[rid] = parts[2] == "1"
            else:
                turns.add(rid)
            continue
        prefix = re.match(r"[0-9a-f]*", rid).group(0)  # type: ignore[union-attr]
        if len(prefix) >= 12:
            torn.append((parts[0], prefix))
    return events, turns, torn


def _started(ack: Path) -> int:
    """How many children have reached their append loop (they write a marker line)."""
    try:
        return ack.read_bytes().count(b"# started")
    except FileNotFoundError:
        return 0


def run_crash_loop(root: Path, dsn: str, cycles: int, seed: int = 0, flapper: Flapper | None = None,
                   max_life: float = 0.9, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    install_poison_rule(dsn)
    cfg = queue_config(dsn, root)
    rng = random.Random(seed)
    ack = root / "acked.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = _started(ack)
    for cycle in range(cycles):
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg), str(ack), str(rng.randrange(1 << 30))],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        life = rng.uniform(0.05, max_life)
        if flapper is not None:
            flapper(rng, life + 0.3)
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.4))  # kill during start-up (imports, adoption, replay)
        else:
            # Kill a random time after the child started appending, however slow the machine.
            deadline = time.monotonic() + 60
            while _started(ack) <= started and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)
            time.sleep(life)
        started = _started(ack)
        if child.poll() is not None:
            raise RuntimeError(f"child died on its own in cycle {cycle}: {child.stderr.read().decode()[-2000:]}")
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]
        log(f"cycle {cycle + 1}/{cycles}: killed")
    return check(root, dsn, cfg, ack, cycles)


def check(root: Path, dsn: str, cfg: dict[str, Any], ack: Path, cycles: int) -> dict[str, Any]:
    from memory import MemoryService

    time.sleep(0.5)  # let any flapper thread release its lock
    svc = MemoryService.from_config(cfg)
    drained = svc.flush(300)
    problems = svc.check()
    stats = svc.health()["queue"]
    events, turns, torn = read_acks(ack)
    in_db = svc.store.existing_ids("events", list(events))
    turns_in_db = svc.store.existing_ids("turns", list(turns))
    torn_missing = []
    for kind, prefix in torn:
        table, col = ("events", "event_id") if kind == "e" else ("turns", "turn_id")
        p = svc.store.param
        upper = prefix + "~"  # ids are lower-case hex: every id with this prefix sorts below it
        if not svc.store.execute(f"SELECT {col} FROM {table} WHERE {col} >= {p} AND {col} < {p} LIMIT 1",
                                 (prefix, upper)):
            torn_missing.append(prefix)
    svc.close()
    dead_lines = [json.loads(x) for x in (root / "queue" / "dead-letter.jsonl").read_text().splitlines()] \
        if (root / "queue" / "dead-letter.jsonl").exists() else []
    dead_ids = [e["row"][0] for e in dead_lines if e["kind"] == 1]
    dead_set = set(dead_ids)
    lost = [i for i in events if i not in in_db and i not in dead_set]
    lost += [t for t in turns if t not in turns_in_db]
    lost += [p for p in torn_missing if not any(d.startswith(p) for d in dead_ids)]
    duplicated = len(dead_ids) - len(dead_set) + len(dead_set & in_db)
    wrongly_dead = [i for i in dead_set if i in events and not events[i]]
    poison_in_db = [i for i, p in events.items() if p and i in in_db]
    return {"cycles": cycles, "acknowledged": len(events) + len(turns), "events": len(events),
            "turns": len(turns), "torn_ack_lines": len(torn), "lost": len(lost), "duplicated": duplicated, "dead_lettered": len(dead_set),
            "wrongly_dead": len(wrongly_dead), "poison_in_db": len(poison_in_db), "drained": drained,
            "check_problems": problems, "quarantined": stats["quarantined"], "lost_ids": lost[:10]}


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
