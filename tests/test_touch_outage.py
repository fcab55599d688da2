"""Recall touches during an outage wait in memory, one per item, instead of filling the journal.

The buffer's rules are checked directly; the service's use of it through a real outage (SQLite's
folder taken away; MariaDB behind the refusing fault proxy), with decay on: recalls during the
outage add no record to the queue, and once the database is back the first recall hands the
waiting touches on, so the items recalled during the outage are counted and promoted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import MemoryService
from memory._touches import TouchBuffer

from .conftest import service_config, wait_for
from .test_recall_outage import Outage
from .test_recall_outage import outage as outage  # noqa: F401 - the fixture, shared


def test_touches_pass_straight_through_without_a_backlog() -> None:
    buf = TouchBuffer(capacity=10)
    touches = [("event", "a", 1.0), ("event", "a", 2.0), ("knowledge", "k", 1.5)]
    assert buf.offer(touches, backlog=False) == touches
    assert buf.stats().held == 0


def test_a_backlog_coalesces_per_item_keeps_the_newest_time_and_releases_first() -> None:
    buf = TouchBuffer(capacity=10)
    assert buf.offer([("event", "b", 5.0), ("event", "a", 3.0)], backlog=True) == []
    assert buf.offer([("event", "a", 9.0), ("event", "a", 4.0), ("knowledge", "k", 1.0)], backlog=True) == []
    st = buf.stats()
    assert (st.held, st.coalesced, st.shed) == (3, 2, 0)
    out = buf.offer([("event", "z", 10.0)], backlog=False)
    # Held touches first, in item order, each at its newest time; then the new one.
    assert out == [("event", "a", 9.0), ("event", "b", 5.0), ("knowledge", "k", 1.0), ("event", "z", 10.0)]
    assert buf.stats().held == 0 and buf.stats().released == 3
    assert buf.offer([], backlog=False) == []


def test_the_bound_sheds_new_items_but_still_coalesces_held_ones() -> None:
    buf = TouchBuffer(capacity=2)
    buf.offer([("event", str(i), float(i)) for i in range(5)], backlog=True)
    buf.offer([("event", "0", 99.0)], backlog=True)  # already held: folded in, not shed
    st = buf.stats()
    assert (st.held, st.shed, st.coalesced) == (2, 3, 1)
    assert buf.offer([], backlog=False) == [("event", "0", 99.0), ("event", "1", 1.0)]


@pytest.fixture
def decaying(outage: Outage, tmp_path: Path) -> Iterator[MemoryService]:  # noqa: F811
    cfg = service_config(outage.dsn, tmp_path)
    cfg["decay"] = {"enabled": True, "interval": "1h"}
    svc = MemoryService.from_config(cfg, start_vault=False)
    yield svc
    outage.restore()
    svc.flush(30)
    problems = svc.check()
    svc.close()
    assert problems == [], problems


def test_recalls_during_an_outage_add_no_records_and_count_after_it(outage: Outage,  # noqa: F811
                                                                      decaying: MemoryService) -> None:
    svc = decaying
    svc.initialize()
    old = svc.append_event({"text": "the brass lantern hangs in the shed"}, "s").event_id
    assert svc.flush(30)
    assert wait_for(lambda: any(h.id == old for h in svc.recall("brass lantern")), 30)
    assert svc.flush(30)
    before = svc.store.item_state("event", old)
    assert before is not None and before.recall_count >= 1

    outage.cut()
    new = svc.append_event({"text": "a brass lantern for the boat"}, "s").event_id
    assert wait_for(lambda: svc.queue.breaker.is_open, 60)
    accepted = svc.queue.view().accepted
    for _ in range(200):  # a busy recall loop through the outage: answered from the pending window
        assert any(h.id == new for h in svc.recall("brass lantern"))
    assert svc.queue.view().accepted == accepted  # not one touch record per hit per recall
    touches = svc.health()["decay"]["touches"]
    assert touches["held"] >= 1 and touches["coalesced"] >= 199, touches

    outage.restore()
    assert wait_for(lambda: svc.flush(1.0), 120)
    assert wait_for(lambda: not svc.queue.breaker.is_open, 30)
    svc.recall("nothing matches this at all qqq")  # any recall after recovery hands them on
    assert wait_for(lambda: svc.flush(1.0), 60)
    assert svc.health()["decay"]["touches"]["held"] == 0
    st = svc.store.item_state("event", new)
    # The event recalled 200 times during the outage: counted once, at the newest time.
    assert st is not None and st.recall_count == 1 and st.last_recalled_at is not None, st
