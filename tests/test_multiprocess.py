"""Scale-out: several processes share one SQLite file or one MariaDB database, nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memory import load_config
from memory.store import create_store

from .conftest import service_config

CHILD = r"""
import json, sys
from memory import MemoryService
cfg = json.loads(sys.argv[1])
n = int(sys.argv[2])
with MemoryService.from_config(cfg) as svc:
    ids = []
    for i in range(n):
        ev = svc.append_event({"proc": sys.argv[3], "i": i}, "shared-" + sys.argv[3])
        t = svc.append_turn("shared-" + sys.argv[3], ev.event_id)
        svc.finish_turn(t.turn_id, status="ok")
        ids.append((ev.event_id, t.turn_id))
    ok = svc.flush(120)
    problems = svc.check()
print(json.dumps({"ids": ids, "flushed": ok, "problems": problems}))
"""


def test_four_processes_append_at_once(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)  # the same queue folder too: each process claims its own slot
    n = 1500
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg), str(n), str(p)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "database is locked" not in err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["flushed"] and r["problems"] == [] for r in results), results
    events = [e for r in results for e, _ in r["ids"]]
    turns = [t for r in results for _, t in r["ids"]]
    assert len(set(events)) == len(events) == 4 * n
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    try:
        assert store.count("events") == 4 * n  # every record exactly once
        assert store.count("turns") == 4 * n
        assert store.existing_ids("events", events) == set(events)
        assert store.existing_ids("turns", turns) == set(turns)
        rows = store.execute("SELECT COUNT(*) FROM turns WHERE status = 'ok'")
        assert rows[0][0] == 4 * n
    finally:
        store.dispose()
    assert len(list((tmp_path / "queue").glob("slot-*"))) >= 2  # they really ran side by side
