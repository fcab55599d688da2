"""MariaDB faults for real: a TCP proxy that refuses, resets mid-query, blackholes and slows the
connection, and a private mariadbd killed with SIGKILL and restarted. Nothing lost, nothing twice."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import IN_CI, require_mysql, wait_for
from .faultproxy import FaultProxy
from .mariadb_server import OwnMariaDB

pytestmark = pytest.mark.integration
Make = Callable[..., MemoryService]


def test_refused_connections(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    svc = make_service(dsn)
    svc.append_event({"warm": 1}, "s")
    assert svc.flush(30)
    p.set_mode("refuse")
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(300)]
    assert wait_for(lambda: svc.queue.breaker.is_open)
    assert svc.health()["database"]["reachable"] is False  # answered without a connect attempt
    p.set_mode("forward")
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    assert svc.store.existing_ids("events", ids) == set(ids)


def test_reset_in_the_middle_of_queries(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    svc = make_service(dsn, batch_size=400)
    svc.initialize()
    p.reset_after = 20_000  # connections die partway through a multi-row INSERT
    p.set_mode("reset")
    ids = [svc.append_event({"i": i, "pad": "r" * 300}, "s").event_id for i in range(2000)]
    assert wait_for(lambda: svc.queue.breaker.failures >= 2)
    p.set_mode("forward")
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    assert svc.store.existing_ids("events", ids) == set(ids)
    assert svc.store.count("events") == 2000  # retried batches never duplicate
    assert svc.health()["queue"]["dead_lettered"] == 0


def test_slow_database_never_slows_the_caller(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    svc = make_service(dsn)
    svc.initialize()
    p.delay = 0.5
    p.set_mode("slow")
    first = svc.append_event({"first": True}, "s")
    assert wait_for(lambda: bool(svc.queue._inflight))  # the writer is now stuck in the slow round trip
    committed = svc.queue.committed
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(500)]
    assert svc.queue.committed == committed  # 500 appends finished while one batch was still in flight
    p.set_mode("forward")
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    assert svc.store.existing_ids("events", [first.event_id, *ids]) == {first.event_id, *ids}


@pytest.fixture
def own_mariadb(tmp_path: Path) -> Iterator[OwnMariaDB]:
    require_mysql()
    try:
        server = OwnMariaDB(tmp_path / "mariadb")
    except (FileNotFoundError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"cannot start a private mariadbd: {exc}", pytrace=False)
        pytest.skip(f"cannot start a private mariadbd: {exc}")
    server.start()
    server.admin("CREATE DATABASE memtest CHARACTER SET utf8mb4")
    try:
        yield server
    finally:
        server.stop()


def test_server_killed_and_restarted(make_service: Make, own_mariadb: OwnMariaDB) -> None:
    svc = make_service(f"{own_mariadb.url}/memtest")
    sent: list[str] = []
    stop = threading.Event()

    def producer() -> None:
        i = 0
        while not stop.is_set():
            sent.append(svc.append_event({"i": i}, "s").event_id)
            i += 1
            if i % 100 == 0:
                time.sleep(0.005)

    t = threading.Thread(target=producer)
    t.start()
    try:
        assert wait_for(lambda: svc.queue.committed > 500)
        own_mariadb.kill()  # SIGKILL mid-stream
        assert wait_for(lambda: svc.queue.breaker.failures >= 1)
        time.sleep(0.5)
        own_mariadb.start()  # crash recovery, same data directory
        assert wait_for(lambda: svc.queue.breaker.failures == 0 and svc.queue.committed > 1000, timeout=120)
    finally:
        stop.set()
        t.join()
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    assert svc.store.existing_ids("events", sent) == set(sent)
    assert svc.store.count("events") == len(sent)


RESET_SCRIPT = r"""
import sys
import pymysql
from memory import load_config
from memory.store import create_store
store = create_store(load_config({"database": {"dsn": sys.argv[1]}}).database)
conn = store.engine.raw_connection()  # the write path's way: a pooled DBAPI connection
cur = conn.cursor()
cur.execute("SELECT CONNECTION_ID()")
cid = cur.fetchone()[0]
cur.close()
killer = pymysql.connect(host="127.0.0.1", user="root")
killer.cursor().execute(f"KILL {int(cid)}")  # the server drops it after its last query
killer.close()
conn.close()  # the pool's reset-on-return (a rollback) fails here
print("done", flush=True)
"""


def test_a_connection_dropped_before_its_return_logs_one_line_not_a_traceback(mysql_dsn: str,
                                                                                tmp_path: Path) -> None:
    script = tmp_path / "reset.py"
    script.write_text(RESET_SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), mysql_dsn], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "pooled connection dropped at return" in proc.stderr
