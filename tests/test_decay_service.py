"""Decay behind the service: recall's touches through the journal, forget/restore, resurrection
blocked on the write path, the scheduler and the health section — on SQLite and MariaDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory import MemoryService
from memory._records import EVENT

from .conftest import service_config, wait_for


def make(dsn: str, root: Path, **decay: Any) -> MemoryService:
    cfg = service_config(dsn, root)
    cfg["decay"] = {"enabled": True, **decay}
    cfg["audit"] = {"path": str(root / "audit.jsonl")}
    return MemoryService.from_config(cfg, start_vault=False)


def state(svc: MemoryService, kind: str, item_id: str) -> Any:
    return svc.store.item_state(kind, item_id)


def test_recall_touches_count_and_promote_through_the_journal(dsn: str, tmp_path: Path) -> None:
    svc = make(dsn, tmp_path)
    try:
        ev = svc.append_event({"text": "the blue kettle whistles"}, "s")
        other = svc.append_event({"text": "unrelated words entirely"}, "s")
        assert svc.flush(30)
        assert wait_for(lambda: bool(svc.recall("blue kettle", session_key="s")), 30)
        for _ in range(2):
            assert svc.recall("blue kettle", session_key="s")[0].id == ev.event_id
        assert svc.flush(30)
        st = state(svc, "event", ev.event_id)
        assert st is not None and st.recall_count >= 3 and st.last_recalled_at is not None
        # Events start in zone 3 (the default); each batch of touches promotes one zone (a burst of
        # recalls counts every one of them but promotes once per batch the writer applies).
        assert st.zone < 3, st
        assert state(svc, "event", other.event_id) is None or state(svc, "event", other.event_id).recall_count == 0
    finally:
        svc.close()


def test_forget_keeps_an_event_out_until_restored_even_when_it_is_replayed(dsn: str, tmp_path: Path) -> None:
    svc = make(dsn, tmp_path)
    try:
        ev = svc.append_event({"text": "a secret recipe for plum jam"}, "s")
        assert svc.flush(30)
        row = svc.store.get_event(ev.event_id)
        assert row is not None
        res = svc.forget(ev.event_id, "asked to")
        assert res.ok and res.kind == "event", res
        assert svc.store.get_event(ev.event_id) is None
        assert wait_for(lambda: not any(h.id == ev.event_id for h in svc.recall("plum jam recipe")), 30)
        svc.queue.submit(EVENT, tuple(row))  # the id comes back (a replayed journal, an import)
        assert svc.flush(30)
        assert svc.store.get_event(ev.event_id) is None  # ... and stays forgotten
        assert svc.check() == []  # the dropped record is accounted for, not lost
        back = svc.restore(ev.event_id)
        assert back.ok, back
        assert svc.store.get_event(ev.event_id) == row
        assert wait_for(lambda: any(h.id == ev.event_id for h in svc.recall("plum jam recipe")), 30)
        assert not svc.forget("no-such-id").ok and "no such" in svc.forget("no-such-id").message
    finally:
        svc.close()


def test_forget_with_the_database_away_answers_and_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the database's folder should be")
    svc = make(f"sqlite:///{blocker / 'm.db'}", tmp_path)
    try:
        res = svc.forget("anything", "x")
        assert not res.ok and res.message.startswith("not forgotten")
        assert not svc.restore("anything").ok
        svc.append_event({"x": 1}, "s")
        assert wait_for(lambda: svc.queue.breaker.is_open, 30)
        # A known outage: forget, restore and the decay health section answer without the database.
        assert "does not answer" in svc.forget("anything").message
        assert "does not answer" in svc.restore("anything").message
        decay = svc.health()["decay"]
        assert decay["enabled"] is True and decay["unavailable"] is True, decay
    finally:
        svc.close(timeout=0.5)


def test_health_has_a_decay_section_and_the_scheduler_runs(tmp_path: Path) -> None:
    svc = make(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    try:
        assert wait_for(lambda: svc.health()["decay"].get("last_run_at") is not None, 60), svc.health()["decay"]
        d = svc.health()["decay"]
        assert d["enabled"] and d["scheduler_running"] is True and d["next_run_at"] > d["last_run_at"]
    finally:
        svc.close()
    assert "decay_run" in (tmp_path / "audit.jsonl").read_text()


def test_decay_disabled_writes_no_touches(tmp_path: Path) -> None:
    svc = make(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, enabled=False)
    try:
        ev = svc.append_event({"text": "green tea"}, "s")
        assert svc.flush(30)
        assert wait_for(lambda: bool(svc.recall("green tea")), 30)
        assert svc.flush(30)
        assert state(svc, "event", ev.event_id) is None
        assert svc.health()["decay"] == {"enabled": False}
        assert svc.queue.stats()["accepted"] == 1  # no touch record was even journaled
    finally:
        svc.close()
