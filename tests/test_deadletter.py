"""Rows the database really rejects are isolated from their batch and dead-lettered; CLI works on them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from memory import MemoryService

Make = Callable[..., MemoryService]


def add_poison_rule(svc: MemoryService) -> None:
    """A real database rule that rejects rows whose obs mentions 'poison'."""
    if svc.store.dialect == "sqlite":
        svc.store.execute("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.obs LIKE '%poison%' "
                          "BEGIN SELECT RAISE(ABORT, 'poison row'); END")
    else:
        svc.store.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (obs NOT LIKE '%poison%')")


def drop_poison_rule(svc: MemoryService) -> None:
    if svc.store.dialect == "sqlite":
        svc.store.execute("DROP TRIGGER poison")
    else:
        svc.store.execute("ALTER TABLE events DROP CONSTRAINT no_poison")


def cli(tmp_path: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(json.dumps({"database": {"dsn": dsn}, "failure_queue": {"path": str(tmp_path / "queue")}}))
    return subprocess.run([sys.executable, "-m", "memory.cli", *args, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def test_bad_rows_never_hold_back_good_ones(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn, max_retries=3, batch_size=64)
    svc.initialize()
    add_poison_rule(svc)
    good, bad = [], []
    for i in range(200):
        if i in (17, 150):
            bad.append(svc.append_event({"text": f"poison {i}"}, "s").event_id)
        else:
            good.append(svc.append_event({"text": f"fine {i}"}, "s").event_id)
    assert svc.flush(60)
    assert svc.store.existing_ids("events", good + bad) == set(good)
    h = svc.health()["queue"]
    assert h["committed"] == 198 and h["dead_lettered"] == 2 and h["pending"] == 0
    lines = [json.loads(x) for x in (tmp_path / "queue" / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(e["row"][0] for e in lines) == sorted(bad)
    for e in lines:
        assert e["attempts"] == 3 and e["reason"] == "rejected"
        assert "poison" in e["first_error"].lower() or "no_poison" in e["first_error"].lower() \
            or "constraint" in e["first_error"].lower()
        assert e["first_failed_at"] <= e["last_failed_at"] <= e["dead_at"]
    assert svc.check() == []

    # The CLI sees them, and requeue writes them once the database accepts them.
    listed = cli(tmp_path, dsn, "dead-letter", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(e["row"][0] for e in json.loads(listed.stdout)) == sorted(bad)
    status = cli(tmp_path, dsn, "queue", "status", "--json")
    assert json.loads(status.stdout)["dead_letters"] == 2
    still = cli(tmp_path, dsn, "dead-letter", "requeue", "--json")
    assert json.loads(still.stdout) == {"requeued": 0, "remaining": 2}
    drop_poison_rule(svc)
    done = cli(tmp_path, dsn, "dead-letter", "requeue", "--json")
    assert json.loads(done.stdout) == {"requeued": 2, "remaining": 0}, done.stderr
    assert svc.store.existing_ids("events", bad) == set(bad)
    human = cli(tmp_path, dsn, "dead-letter", "list")
    assert "no dead letters" in human.stdout


def test_dead_letters_are_not_duplicated_by_a_replay(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn, max_retries=1)
    svc.initialize()
    add_poison_rule(svc)
    bad = svc.append_event({"text": "poison"}, "s").event_id
    assert svc.flush(30)
    # Simulate a crash before the resolution was recorded: rewind the saved watermark.
    svc.close()
    state = tmp_path / "queue" / "slot-0" / "state.json"
    data = json.loads(state.read_text())
    data["watermark"] = [data["watermark"][0], 16]
    state.write_text(json.dumps(data))
    again = make_service(dsn, max_retries=1)
    assert again.flush(30)
    lines = (tmp_path / "queue" / "dead-letter.jsonl").read_text().splitlines()
    assert [json.loads(x)["row"][0] for x in lines] == [bad]


def test_purge(make_service: Make, tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'p.db'}"
    svc = make_service(dsn, max_retries=1)
    svc.initialize()
    add_poison_rule(svc)
    svc.append_event({"text": "poison"}, "s")
    assert svc.flush(30)
    out = cli(tmp_path, dsn, "dead-letter", "purge", "--yes", "--json")
    assert json.loads(out.stdout) == {"purged": 1}
    assert (tmp_path / "queue" / "dead-letter.jsonl").read_text() == ""
