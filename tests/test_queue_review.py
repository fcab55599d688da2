"""Review of the queue's lifecycle edges: each test tries to break "no exception, no blocking, no
lost record; every record accounted for; check() clean" at one edge.

Real files, processes, locks and databases throughout. Scenarios that could hang or kill the
interpreter run in a subprocess with a timeout, so a deadlock fails the test instead of pytest.
Each test failed before the fix it guards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService

from .conftest import db_ids, service_config

DEAD_DSN = "mysql+pymysql://root@127.0.0.1:1/nothing"  # refused at once: an outage
POISON = ("CREATE TRIGGER IF NOT EXISTS poison BEFORE INSERT ON events WHEN NEW.session_key = 'poison' "
          "BEGIN SELECT RAISE(ABORT, 'poison'); END")

# Appends n events during an outage, prints the acknowledged ids, dies by SIGKILL (no close()).
KILLED = r"""
import json, os, signal, sys
from memory import MemoryService
cfg, n = json.loads(sys.argv[1]), int(sys.argv[2])
svc = MemoryService.from_config(cfg)
ids = [svc.append_event({"i": i, "pad": "k" * 40}, "s").event_id for i in range(n)]
print(json.dumps({"ids": ids, "slot": svc.queue.slot.path.name if svc.queue.slot else None,
                  "segments": svc.queue.journal.segments()}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_child(cfg: dict[str, Any], n: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", KILLED, json.dumps(cfg), str(n)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_script(script: str, *args: str, timeout: float = 18) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter; a hang past ``timeout`` fails the test."""
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the scenario hung for {timeout}s: {(exc.stderr or b'')[-2000:]!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def drain(cfg: dict[str, Any]) -> tuple[bool, list[str], dict[str, Any]]:
    """Start a fresh service on the folder, let it replay everything, report flush/check/health."""
    svc = MemoryService.from_config(cfg)
    try:
        ok = svc.flush(30)
        return ok, svc.check(), svc.health()
    finally:
        svc.close(timeout=5)


def write_state(slot: Path, **fields: Any) -> None:
    slot.mkdir(parents=True, exist_ok=True)
    (slot / "state.json").write_text(json.dumps(fields))


# -- hostile or absurd state.json ------------------------------------------------------------------------
def test_an_absurd_next_segment_never_costs_acknowledged_records(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    write_state(tmp_path / "queue" / "slot-0", watermark=None, next_segment=10**12)
    dead = killed_child(service_config(DEAD_DSN, tmp_path), 50)  # slot-0, during an outage, then kill -9
    assert dead["slot"] == "slot-0" and dead["segments"]
    ok, problems, health = drain(service_config(dsn, tmp_path))
    assert ok and problems == []
    assert db_ids(dsn, dead["ids"]) == set(dead["ids"]), health["queue"]


def test_a_watermark_offset_past_the_segment_end_skips_nothing(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    dead = killed_child(service_config(DEAD_DSN, tmp_path), 50)
    first = dead["segments"][0]
    write_state(tmp_path / "queue" / dead["slot"], watermark=[first, 10**9], next_segment=first + 1)
    ok, problems, health = drain(service_config(dsn, tmp_path))
    assert ok and problems == []
    assert db_ids(dsn, dead["ids"]) == set(dead["ids"]), health["queue"]


@pytest.mark.parametrize("count", [
    -7,
    10**6,
])
def test_saved_counts_that_lie_do_not_corrupt_the_accounting(count: int, tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = service_config(DEAD_DSN, tmp_path, max_dump_file_size_mb=0.01)
    dead = killed_child(cfg, 300)  # several segments, the first ones sealed
    first = dead["segments"][0]
    assert len(dead["segments"]) >= 2
    write_state(tmp_path / "queue" / dead["slot"], watermark=[first, 16], next_segment=first + 1,
                counts={str(first): count})
    ok, problems, health = drain(service_config(dsn, tmp_path, max_dump_file_size_mb=0.01))
    assert db_ids(dsn, dead["ids"]) == set(dead["ids"])
    assert ok and problems == []
    assert health["queue"]["dropped"] == {}, health["queue"]


# -- hostile files in the queue folder -------------------------------------------------------------------
FIFO_SCRIPT = r"""
import json, os, sys
from memory import MemoryService
cfg, fifo = json.loads(sys.argv[1]), sys.argv[2]
os.makedirs(os.path.dirname(fifo), exist_ok=True)
os.mkfifo(fifo)  # nobody will ever open the other end
svc = MemoryService.from_config(cfg)
first = [svc.append_event({"i": i}, "s").event_id for i in range(5)]
ok1 = svc.flush(4)
second = [svc.append_event({"j": i}, "s").event_id for i in range(5)]
ok2 = svc.flush(4)
print(json.dumps({"ok1": ok1, "ok2": ok2}), flush=True)
os._exit(0)  # the writer may be blocked in open(): do not wait for it
"""


@pytest.mark.parametrize("where", [
    "dead-letter.jsonl",
    "slot-0/state.json.tmp",
])
def test_a_fifo_in_the_queue_folder_never_blocks_the_writer(where: str, tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    out = run_script(FIFO_SCRIPT, json.dumps(service_config(dsn, tmp_path)), str(tmp_path / "queue" / where))
    assert out == {"ok1": True, "ok2": True}


# -- fork ------------------------------------------------------------------------------------------------
DEAD_LOCK_FORK = r"""
import json, os, signal, sys, threading, time
from memory import MemoryService
cfg, poison = json.loads(sys.argv[1]), sys.argv[2]
svc = MemoryService.from_config(cfg)
svc.initialize()
svc.store.execute(poison)
# The writer is inside DeadLetter.add() (holding the file's lock) at the moment of a fork.
held, release = threading.Event(), threading.Event()
def holder():
    with svc.queue.dead.locked():
        held.set()
        release.wait()
t = threading.Thread(target=holder)
t.start()
held.wait()
pid = os.fork()
if pid == 0:  # a long-lived worker (gunicorn, a pool) that never touches memory
    time.sleep(30)
    os._exit(0)
release.set()
t.join()
svc.append_event({"bad": 1}, "poison")  # rejected: dead-lettered after max_retries=1
ok = svc.flush(8)
dead = svc.health()["queue"]["dead_lettered"]
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print(json.dumps({"flushed": ok, "dead_lettered": dead}), flush=True)
os._exit(0)
"""


def test_a_fork_during_a_dead_letter_write_does_not_hang_the_parent_writer(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    out = run_script(DEAD_LOCK_FORK, json.dumps(service_config(dsn, tmp_path, max_retries=1)), POISON)
    assert out == {"flushed": True, "dead_lettered": 1}


ORPHAN_FIFO = r"""
import json, os, sys
from memory import MemoryService
cfg, orphan = json.loads(sys.argv[1]), sys.argv[2]
os.makedirs(orphan, exist_ok=True)
os.mkfifo(os.path.join(orphan, "seg-000000000007.log"))  # a FIFO named like a segment, in a dead slot
svc = MemoryService.from_config(cfg)  # claims slot-0, adopts the dead slot-1
rec = svc.append_event({"i": 1}, "s")
ok = svc.flush(10)
print(json.dumps({"flushed": ok, "problems": svc.check()}), flush=True)
os._exit(0)
"""


def test_a_fifo_named_like_a_segment_in_a_dead_slot_never_blocks_start_up(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    out = run_script(ORPHAN_FIFO, json.dumps(service_config(dsn, tmp_path)), str(tmp_path / "queue" / "slot-1"),
                     timeout=15)
    assert out == {"flushed": True, "problems": []}


def test_a_directory_named_like_a_resolved_segment_does_not_strand_a_dead_slot(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    holder = MemoryService.from_config(service_config(dsn, tmp_path))  # keeps slot-0
    spacer = MemoryService.from_config(service_config(dsn, tmp_path))  # keeps slot-1 for now
    try:
        dead = killed_child(service_config(DEAD_DSN, tmp_path), 40)  # slot-2, unsent, then kill -9
        assert dead["slot"] == "slot-2"
        spacer.close()
        orphan = tmp_path / "queue" / "slot-2"
        first = dead["segments"][0]
        write_state(orphan, watermark=[first, 16], next_segment=first + 1)
        (orphan / "seg-000000000000.log").mkdir()  # below the watermark: "resolved"
        ok, problems, health = drain(service_config(dsn, tmp_path))  # reuses slot-1, adopts slot-2
        assert ok and problems == []
        assert db_ids(dsn, dead["ids"]) == set(dead["ids"]), health["queue"]
    finally:
        spacer.close()
        holder.close()


# -- disk_full: records held in memory -------------------------------------------------------------------
def test_a_finish_held_in_memory_never_overtakes_its_turn_on_disk(tmp_path: Path) -> None:
    bound = {"max_dump_file_size_mb": 0.05, "max_disk_mb": 0.3, "max_in_memory": 500, "max_retries": 1,
             "batch_size": 50}  # a batch of held finishes alone: the turns are in later batches
    full = MemoryService.from_config(service_config(DEAD_DSN, tmp_path, **bound))
    turns = [full.append_turn("s", None, plan={"pad": "t" * 100}).turn_id for _ in range(4000)]
    assert full.health()["queue"]["dropped"].get("disk_full", 0) > 0  # the bound was reached
    full.close(timeout=0.2)
    early = turns[:100]  # journaled long before the bound was reached
    dsn = f"sqlite:///{tmp_path / 'm.db'}"
    again = MemoryService.from_config(service_config(dsn, tmp_path, **bound), start_writer=False)
    try:
        for tid in early:  # the folder is still at the bound: these are held in memory
            again.finish_turn(tid, status="ok")
        again.queue.start()
        assert again.flush(60)
        q = again.health()["queue"]
        assert q["dead_lettered"] == 0, q
        done = again.store.execute("SELECT COUNT(*) FROM turns WHERE status = 'ok'")[0][0]
        assert done == len(early)
    finally:
        again.close()
