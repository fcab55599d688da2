"""The database is unreachable: construction and appends neither raise nor hang; catch-up later."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import MYSQL_URL
from .faultproxy import FaultProxy

Make = Callable[..., MemoryService]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def proxy(mysql_dsn: str) -> Iterator[tuple[FaultProxy, str]]:
    from sqlalchemy.engine import make_url

    url = make_url(mysql_dsn)
    p = FaultProxy(url.host or "127.0.0.1", url.port or 3306)
    try:
        yield p, url.set(port=p.port).render_as_string(hide_password=False)
    finally:
        p.close()


def test_closed_port_neither_raises_nor_hangs(make_service: Make, tmp_path: Path) -> None:
    dsn = f"mysql+pymysql://root@127.0.0.1:{closed_port()}/nodb"
    svc = make_service(dsn)
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(100)]
    t = svc.append_turn("s", ids[0])
    svc.finish_turn(t.turn_id, status="ok")
    assert svc.flush(0.5) is False  # honest: nothing could be written
    assert [e.event_id for e in svc.get_recent_events("s", 200)] == sorted(ids, reverse=True)
    h = svc.health()
    assert h["database"]["reachable"] is False and h["pending"] == 102 and h["status"] == "degraded"
    assert svc.close(timeout=0.5) is False
    # Nothing is lost: the records wait in the journal for the next start.
    assert sum(p.stat().st_size for p in (tmp_path / "queue").rglob("seg-*.log")) > 100 * 20


@pytest.mark.integration
def test_catches_up_when_the_database_comes_back(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    p.set_mode("refuse")
    svc = make_service(dsn)
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(200)]
    assert wait_for(lambda: svc.queue.breaker.failures >= 1)
    assert svc.health()["database"]["reachable"] is False
    p.set_mode("forward")
    assert wait_for(lambda: svc.flush(1.0), timeout=90)
    assert svc.store.existing_ids("events", ids) == set(ids)


@pytest.mark.integration
def test_blackholed_server_does_not_block_the_caller(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    svc = make_service(dsn)
    svc.append_event({"warm": 1}, "s")
    assert svc.flush(30)
    p.set_mode("blackhole")
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(100)]
    assert len(ids) == 100  # returned while every DB connection hangs
    p.set_mode("forward")
    p.kill_all()
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    assert svc.store.existing_ids("events", ids) == set(ids)
