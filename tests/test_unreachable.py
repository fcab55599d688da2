"""The database is unreachable: construction and appends neither raise nor hang; catch-up later."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import wait_for
from .faultproxy import FaultProxy

Make = Callable[..., MemoryService]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port



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
