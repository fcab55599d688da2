"""The store benchmark: hot path, drain throughput, naive inserts and the raw driver limit."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fresh_dsn, pct, sample_obs, service_cfg

from memory import MemoryService, load_config
from memory._records import to_json
from memory.store import create_store


def hot_path(dsn: str, n: int) -> dict[str, float]:
    """append_event latency while the writer drains into the database."""
    with tempfile.TemporaryDirectory() as d:
        svc = MemoryService.from_config(service_cfg(dsn, Path(d)))
        svc.initialize()
        obs = [sample_obs(i) for i in range(n)]
        lat = []
        pc = time.perf_counter_ns
        append = svc.append_event
        for o in obs:
            t = pc()
            append(o, "bench")
            lat.append(pc() - t)
        svc.flush(300)
        svc.close()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99)}


def drain(dsn: str, n: int, recall: bool = True) -> float:
    """Records/s the writer moves from the queue into the database (records staged first).

    With recall on (the default) every event also writes its outbox row in the same transaction:
    two rows per record, against the raw driver's one."""
    with tempfile.TemporaryDirectory() as d:
        cfg = service_cfg(dsn, Path(d), max_in_memory=n + 1)
        cfg["recall"] = {"enabled": recall}
        svc = MemoryService.from_config(cfg, start_writer=False)
        svc.initialize()
        for i in range(n):
            svc.append_event(sample_obs(i), "bench")
        t = time.perf_counter()
        svc.queue.start()
        assert svc.flush(600)
        elapsed = time.perf_counter() - t
        assert svc.store.count("events") == n
        svc.close()
    return n / elapsed


def rows(n: int) -> list[tuple[Any, ...]]:
    now = time.time()
    return [(f"{i:026x}", now, "bench", to_json(sample_obs(i)), None, None) for i in range(n)]


def raw_driver(dsn: str, n: int) -> float:
    """The driver's own executemany, 1,000-row transactions, same statement and rows."""
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    store.initialize()
    data = rows(n)
    sql = store.insert_event_sql
    if store.dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(store.engine.url.database, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        t = time.perf_counter()
        for i in range(0, n, 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, data[i:i + 1000])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t
        conn.close()
    else:
        import pymysql

        u = store.engine.url
        conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                               database=u.database, charset="utf8mb4")
        cur = conn.cursor()
        t = time.perf_counter()
        for i in range(0, n, 1000):
            cur.executemany(sql, data[i:i + 1000])
            conn.commit()
        elapsed = time.perf_counter() - t
        conn.close()
    store.dispose()
    return n / elapsed


def naive(dsn: str, n: int, tuned: bool) -> dict[str, float]:
    """One SQLAlchemy insert + commit per event: what a caller pays without the queue.

    ``tuned=False`` is the naive way proper: ``create_engine(dsn)`` with its defaults.
    ``tuned=True`` uses this project's engine (WAL, synchronous=NORMAL on SQLite).
    """
    from sqlalchemy import create_engine, insert

    from memory.store._models import Event

    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    store.initialize()
    engine = store.engine if tuned else create_engine(load_config({"database": {"dsn": dsn}}).database.url)
    lat = []
    for i in range(n):
        t = time.perf_counter_ns()
        with engine.begin() as conn:
            conn.execute(insert(Event).values(event_id=f"n{i:025x}", ts=time.time(), session_key="bench",
                                              obs=to_json(sample_obs(i)), gate=None, meta=None))
        lat.append(time.perf_counter_ns() - t)
    engine.dispose()
    store.dispose()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99)}


def run(backends: list[str], n_hot: int, n_drain: int, n_naive: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b in backends:
        res: dict[str, Any] = {}
        with fresh_dsn(b) as dsn:
            res["hot"] = hot_path(dsn, n_hot)
        # Alternate the two drains three times and keep medians: the machine is shared and noisy.
        drains, bare, raws = [], [], []
        for _ in range(3):
            with fresh_dsn(b) as dsn:
                raws.append(raw_driver(dsn, n_drain))
            with fresh_dsn(b) as dsn:
                drains.append(drain(dsn, n_drain))
            with fresh_dsn(b) as dsn:
                bare.append(drain(dsn, n_drain, recall=False))
        res["drain"], res["raw"] = statistics.median(drains), statistics.median(raws)
        res["drain_no_recall"] = statistics.median(bare)
        with fresh_dsn(b) as dsn:
            res["naive"] = naive(dsn, n_naive, tuned=False)
        with fresh_dsn(b) as dsn:
            res["naive_tuned"] = naive(dsn, n_naive, tuned=True)
        out[b] = res
    return out
