"""Decay at scale: a run over 100,000 items against a per-row Python loop, on SQLite and MariaDB.

    .venv/bin/python bench/bench_decay.py [--quick] [--no-mysql] [--items N]

On each backend (a SQLite file and, if reachable, MariaDB at 127.0.0.1:3306 in a database created
and dropped here), two identical databases are built (seeded, deterministic): ``items`` = 90 %
events and 10 % knowledge notes, one graph edge per event. A first ``Decay.run`` adopts them all
(timed: "first run"). Then every state row is set so the next run has real work: per ten items,
one event idle 200 days in zone 4 (forgotten: tombstone, row, edges, outbox), three idle 40 days
in zones 2/3 (demoted), one pinned and idle (protected), five recalled yesterday (kept).

* ``Decay.run`` (timed: "steady run"): set-based, ``batch_size`` 1000 per transaction;
* the baseline on the twin database, measured in the same run: seed 000's approach, a Python loop
  over every item making the same decisions with per-row statements (read the state rows, then
  one UPDATE per demotion; per forgotten event a SELECT, the tombstone INSERT, the DELETEs and the
  outbox row), committing every 1000 items (kinder than a commit per item). Both end in the same
  state, which is checked (zones per item, tombstones, events left).

Target: a steady run over 100,000 items in <= 5 s on both backends. Timings are wall clock on a
shared machine: the load average is printed with the table, and the steady run's CPU time in this
process (the client's share; on MariaDB the server's work is not in it) is shown next to it.
``bench/run.py`` (``./dev bench``) prints the same measures as its decay table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import fresh_dsn, mysql_available, table  # noqa: E402

from memory import load_config  # noqa: E402
from memory.decay import Decay, DecayConfig  # noqa: E402
from memory.store import create_store  # noqa: E402
from memory.store._decay import DecaySql  # noqa: E402
from memory.store._graph import GraphSql  # noqa: E402

DAY = 86400.0
T0 = 1_700_000_000.0
NOW = T0 + 400 * DAY
CHUNK = 5000
CFG = DecayConfig(enabled=True)


def open_store(dsn: str) -> Any:
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    bases = tuple(b for b in (DecaySql, GraphSql) if not isinstance(store, b))
    if bases:
        store.__class__ = type(type(store).__name__, (type(store), *bases), {})
    store.initialize()
    return store


def ids(n: int) -> tuple[list[str], list[str]]:
    n_notes = n // 10
    return [f"01BENCH{i:019d}" for i in range(n - n_notes)], [f"facts/note-{i:06d}" for i in range(n_notes)]


def build(store: Any, n: int) -> None:
    events, notes = ids(n)
    store.recall_outbox_enabled = False  # an indexed database: the outbox is empty before the run
    for i in range(0, len(events), CHUNK):
        store.write_batch([(e, T0 + k, "s1", json.dumps({"text": f"event {k}"}), None, None)
                           for k, e in enumerate(events[i:i + CHUNK], start=i)], [], [])
        store.add_edges([(e, events[(k + 1) % len(events)], "related_to", 1.0, T0)
                         for k, e in enumerate(events[i:i + CHUNK], start=i)], None)
    for i in range(0, len(notes), CHUNK):
        store.upsert_notes("knowledge", [
            (k, "facts", f"knowledge/{k}.md", k, f"body {k}", "[]", "[]", "[]", None,
             hashlib.sha256(k.encode()).hexdigest(), 1, T0) for k in notes[i:i + CHUNK]])
    store.recall_outbox_enabled = True


def plan(kind: str, i: int) -> tuple[int, float, int]:
    """(zone, idle_since, pinned) of the i-th item of a kind before the steady run."""
    slot = i % 10
    if slot == 0 and kind == "event":
        return 4, NOW - 200 * DAY, 0
    if slot in (1, 2, 3):
        return 2 + slot % 2, NOW - 40 * DAY, 0
    if slot == 4:
        return 3, NOW - 40 * DAY, 1
    return 1 + slot % 3, NOW - DAY, 0


def set_states(store: Any, n: int) -> None:
    events, notes = ids(n)
    p = store.param
    rows = [(kind, item, *plan(kind, k)) for kind, items in (("event", events), ("knowledge", notes))
            for k, item in enumerate(items)]
    with store._raw_write() as cur:
        for i in range(0, len(rows), CHUNK):
            cur.executemany(f"UPDATE item_state SET zone = {p}, zone_since = {p}, idle_since = {p}, pinned = {p} "
                            f"WHERE kind = {p} AND item_id = {p}",
                            [(z, t, t, pin, kind, item) for kind, item, z, t, pin in rows[i:i + CHUNK]])


def baseline(store: Any) -> tuple[int, int]:
    """Seed 000's loop: every item read, decided in Python, changed by per-row statements."""
    p, demoted, forgotten = store.param, 0, 0
    decay_cut, forget_cut = NOW - CFG.decay_s, NOW - CFG.forget_s
    items = store._fetch("SELECT kind, item_id, zone, idle_since, pinned FROM item_state", ())
    for i in range(0, len(items), 1000):
        with store._raw_write() as cur:
            for kind, item_id, zone, idle, pinned in items[i:i + 1000]:
                if pinned or zone < CFG.min_zone_for_decay:
                    continue
                if zone == 4 and idle <= forget_cut and kind == "event":
                    cur.execute(f"SELECT event_id, ts, session_key, obs, gate, meta FROM events WHERE event_id = {p}",
                                (item_id,))
                    row = cur.fetchone()
                    payload = json.dumps(dict(zip(("event_id", "ts", "session_key", "obs", "gate", "meta"), row)))
                    cur.execute("INSERT INTO tombstones (kind, item_id, reason, forgotten_at, digest, zone, payload) "
                                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                                (kind, item_id, "auto-forget", NOW, hashlib.sha256(row[3].encode()).hexdigest(), 4,
                                 payload))
                    cur.execute(f"DELETE FROM events WHERE event_id = {p}", (item_id,))
                    cur.execute(f"DELETE FROM item_state WHERE kind = {p} AND item_id = {p}", (kind, item_id))
                    cur.execute(f"DELETE FROM graph_edges WHERE src = {p}", (item_id,))
                    cur.execute(f"DELETE FROM graph_edges WHERE dst = {p}", (item_id,))
                    store.queue_for_index(cur, kind, [item_id], NOW)
                    forgotten += 1
                elif zone < 4 and idle <= decay_cut:
                    cur.execute(f"UPDATE item_state SET zone = {p}, zone_since = {p}, idle_since = {p} "
                                f"WHERE kind = {p} AND item_id = {p}", (zone + 1, NOW, NOW, kind, item_id))
                    demoted += 1
    return demoted, forgotten


def fingerprint(store: Any) -> tuple[Any, ...]:
    zones = store._fetch("SELECT zone, COUNT(*), SUM(pinned) FROM item_state GROUP BY zone ORDER BY zone", ())
    return (tuple(tuple(int(v) for v in r) for r in zones), store.tombstone_count(), store.count("events"),
            store._fetch("SELECT COUNT(*) FROM graph_edges", ())[0][0])


def bench_backend(backend: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with fresh_dsn(backend) as dsn_a, fresh_dsn(backend) as dsn_b:
        a, b = open_store(dsn_a), open_store(dsn_b)
        try:
            t = time.perf_counter()
            build(a, n)
            build(b, n)
            out["build"] = time.perf_counter() - t
            decay = Decay(a, CFG)
            t = time.perf_counter()
            first = decay.run(now=T0)
            out["first"], out["adopted"] = time.perf_counter() - t, first.adopted
            Decay(b, CFG).run(now=T0)
            set_states(a, n)
            set_states(b, n)
            t, cpu = time.perf_counter(), time.process_time()
            report = decay.run(now=NOW)
            out["steady"], out["steady_cpu"] = time.perf_counter() - t, time.process_time() - cpu
            out["demoted"], out["forgotten"], out["protected"] = (len(report.demoted), len(report.forgotten),
                                                                  report.protected)
            t = time.perf_counter()
            out["base_demoted"], out["base_forgotten"] = baseline(b)
            out["baseline"] = time.perf_counter() - t
            out["same"] = fingerprint(a) == fingerprint(b)
            if not out["same"]:
                print(f"  {backend}: states differ: {fingerprint(a)} vs {fingerprint(b)}", flush=True)
        finally:
            a.dispose()
            b.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 items (smoke run)")
    ap.add_argument("--no-mysql", action="store_true")
    ap.add_argument("--items", type=int, default=None, help="items (default 100,000; 20,000 with --quick)")
    args = ap.parse_args()
    n = args.items or (20_000 if args.quick else 100_000)
    backends = ["sqlite"] + (["mariadb"] if not args.no_mysql and mysql_available() else [])
    print(f"# decay benchmark — Python {platform.python_version()}, {platform.machine()}, "
          f"backends: {', '.join(backends)}, {n:,} items\n", flush=True)
    rows = []
    for backend in backends:
        r = bench_backend(backend, n)
        rows.append((backend, f"{r['first']:.2f} s ({r['adopted']:,} adopted)",
                     f"{r['steady']:.2f} s ({r['steady_cpu']:.2f} s CPU here)",
                     f"{r['demoted']:,} / {r['forgotten']:,} / {r['protected']:,}",
                     f"{r['baseline']:.2f} s", f"{r['baseline'] / r['steady']:.1f}x",
                     "yes" if r["same"] else "NO", "yes" if r["steady"] <= 5.0 else "no"))
    print(table(rows, ("backend", "first run", "steady run", "demoted / forgotten / protected",
                       "per-row loop", "speed-up", "same result", "<= 5 s")))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
