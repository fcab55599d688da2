"""The service writes the audit log: recalls, vault conflicts, outages and replays, dead letters.

Real services on real SQLite files / MariaDB; the lines are read back from the file the service's
own writer thread wrote (``close()`` drains it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from memory import MemoryService

from .conftest import service_config, wait_for

REPO = Path(__file__).resolve().parents[1]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def make(dsn: str, root: Path, **audit: Any) -> MemoryService:
    cfg = service_config(dsn, root)
    cfg["audit"] = {"path": str(root / "audit.jsonl"), **audit}
    return MemoryService.from_config(cfg)


def test_a_recall_is_one_line_with_the_query_hashed_by_default(dsn: str, tmp_path: Path) -> None:
    svc = make(dsn, tmp_path)
    ev = svc.append_event({"text": "the espresso machine is broken"}, "s1")
    assert svc.flush(30)
    hits = svc.recall("espresso machine", session_key="s1")
    assert [h.id for h in hits][:1] == [ev.event_id]
    svc.close()
    got = [x for x in lines(tmp_path / "audit.jsonl") if x["event"] == "recall"]
    assert len(got) == 1, got
    line = got[0]
    assert line["query_sha256"] == hashlib.sha256(b"espresso machine").hexdigest()
    assert "espresso" not in json.dumps(line)  # the text itself is not on disk
    assert line["hits"] == len(hits) and line["ids"][0] == f"event:{ev.event_id}" and line["session_key"] == "s1"


def test_query_text_mode_records_the_text(tmp_path: Path) -> None:
    svc = make(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, query_text="text")
    svc.recall("weather in Busan", k=3)
    svc.close()
    got = [x for x in lines(tmp_path / "audit.jsonl") if x["event"] == "recall"]
    assert [x.get("query") for x in got] == ["weather in Busan"] and got[0]["k"] == 3


def test_a_vault_conflict_is_one_line(tmp_path: Path) -> None:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    cfg = service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    cfg["audit"] = {"path": str(tmp_path / "audit.jsonl")}
    svc = MemoryService.from_config(cfg, start_vault=False)
    svc.initialize()
    svc.vault_sync()
    path = tmp_path / "vault" / "knowledge" / "facts" / "coffee.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nHuman addition.\n", encoding="utf-8")  # not synced
    note = svc.upsert_knowledge("facts/coffee", "service version")
    assert note.conflict_path is not None
    svc.vault_sync()  # the same conflict copy seen by the scan is not reported twice
    svc.close()
    got = [x for x in lines(tmp_path / "audit.jsonl") if x["event"] == "vault_conflict"]
    assert len(got) == 1, got
    assert got[0]["copy"] == note.conflict_path and got[0]["note"] == "knowledge/facts/coffee.md"


def test_an_outage_its_replay_and_a_dead_letter_reach_the_log(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the database's folder should be")
    # The database's folder cannot be created while a file has its name: a real outage.
    down = service_config(f"sqlite:///{blocker / 'm.db'}", tmp_path, breaker_threshold=2)
    down["audit"] = {"path": str(tmp_path / "audit.jsonl")}
    svc = MemoryService.from_config(down)
    ids = [svc.append_event({"i": i}, "s").event_id for i in range(20)]
    assert wait_for(lambda: svc.queue.breaker.is_open, 30)
    svc.close(timeout=0.5)  # records stay in the journal
    up = service_config(f"sqlite:///{db}", tmp_path)
    up["audit"] = {"path": str(tmp_path / "audit.jsonl")}
    again = MemoryService.from_config(up)
    assert again.flush(30)
    assert again.store.existing_ids("events", ids) == set(ids)
    again.close()
    events = [x["event"] for x in lines(tmp_path / "audit.jsonl")]
    assert events.count("outage_start") == 1, events
    assert "replay_start" in events and "replay_end" in events, events
    start = next(x for x in lines(tmp_path / "audit.jsonl") if x["event"] == "replay_start")
    assert start["records"] == 20 and start["cause"] == "start-up"


def test_audit_disabled_writes_nothing_and_health_says_so(tmp_path: Path) -> None:
    svc = make(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, enabled=False)
    svc.recall("anything")
    assert svc.health()["audit"]["enabled"] is False
    svc.close()
    assert not (tmp_path / "audit.jsonl").exists()


def test_an_unwritable_audit_path_never_reaches_the_caller(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()  # a directory where the file should be
    svc = make(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    ev = svc.append_event({"text": "hello"}, "s")
    assert svc.flush(30)
    assert svc.recall("hello")[0].id == ev.event_id
    assert wait_for(lambda: svc.health()["audit"]["dropped"]["io_error"] >= 1, 30), svc.health()["audit"]
    assert svc.close()
