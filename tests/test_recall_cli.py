"""``memory recall QUERY``: the table and ``--json`` over a small seeded vault and database (CJK
too), the filters, usage errors (exit 2), what a query sees of changes not indexed yet, and the
answer from the vault files when the database cannot be reached. Real subprocesses, real
databases (a SQLite file and a MariaDB database per test)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService

from .conftest import service_config, wait_for
from .test_unreachable import closed_port

NOTES = {"facts/coffee": "# Coffee\n\nAlice takes a flat white with oat milk every morning.",
         "facts/tea": "# 茶\n\n我们的乌龙茶来自台湾，每天早上泡一壶。",
         "facts/car": "# Car\n\nThe hatchback needs an oil change every 10,000 km."}
EVENTS = [("s1", "Bob ordered an oat milk latte"), ("s2", "Carol asked for oat milk in her tea"),
          ("s1", "客人点了一壶乌龙茶"), ("s2", "Rain expected tomorrow, bring an umbrella")]
HIT_KEYS = {"kind", "id", "score", "title", "text", "session_key", "ts", "why"}


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MEMORY_DATABASE_DSN", "MEMORY_ENABLED", "MEMORY_CONFIG")}
    return {**base, **extra}


def write_config(root: Path, dsn: str, **recall: Any) -> Path:
    cfg = service_config(dsn, root)
    cfg["recall"] = recall
    path = root / "memory.yaml"
    path.write_text(json.dumps(cfg))
    return path


def recall(config: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memory.cli", "recall", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=env(**extra_env))


def recall_json(config: Path, *args: str) -> list[dict[str, Any]]:
    res = recall(config, *args, "--json")
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert isinstance(hits, list)
    return hits


@pytest.fixture
def seeded(dsn: str, tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The NOTES and EVENTS written and indexed; yields the config path and the events' ids and times."""
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 20}
    events: dict[str, Any] = {}
    with MemoryService.from_config(cfg) as svc:
        for key, body in NOTES.items():
            svc.upsert_knowledge(key, body)
        for session, text in EVENTS:
            rec = svc.append_event({"text": text}, session)
            events[text] = {"id": rec.event_id, "ts": rec.ts, "session": session}
        assert svc.flush(60) and svc.vault_sync().database_ok
        assert wait_for(lambda: svc.health()["index"]["lag_records"] == 0)
    yield write_config(tmp_path, dsn), events


def display_col(line: str, needle: str) -> int:
    """Terminal column where ``needle`` starts in ``line`` (wide characters take two)."""
    prefix = line[:line.index(needle)]
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in prefix)


# -- --json ---------------------------------------------------------------------------------------------
def test_json_lists_hits_with_epoch_times(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, events = seeded
    hits = recall_json(config, "oat milk")
    assert all(set(h) == HIT_KEYS for h in hits)
    found = {(h["kind"], h["id"]) for h in hits}
    latte, tea = events["Bob ordered an oat milk latte"], events["Carol asked for oat milk in her tea"]
    assert {("knowledge", "facts/coffee"), ("event", latte["id"]), ("event", tea["id"])} <= found
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    by_id = {h["id"]: h for h in hits}
    assert by_id[latte["id"]]["ts"] == pytest.approx(latte["ts"]) and by_id[latte["id"]]["session_key"] == "s1"
    assert by_id["facts/coffee"]["ts"] is None and by_id["facts/coffee"]["title"] == "Coffee"
    assert "oat milk" in by_id["facts/coffee"]["text"]
    assert set(by_id["facts/coffee"]["why"]) >= {"keyword_rank", "vector_rank", "recency"}


def test_json_cjk_query(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, events = seeded
    hits = recall_json(config, "乌龙茶", "--k", "2")
    assert len(hits) == 2
    assert {(h["kind"], h["id"]) for h in hits} == {("knowledge", "facts/tea"),
                                                   ("event", events["客人点了一壶乌龙茶"]["id"])}
    assert any("乌龙茶" in h["text"] for h in hits)


# -- the table --------------------------------------------------------------------------------------------
def test_table_is_aligned_with_utc_times(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, events = seeded
    res = recall(config, "oat milk")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header, rows = lines[0], lines[1:]
    assert header.split() == ["#", "kind", "id", "score", "title/session", "ts", "(UTC)", "snippet"]
    assert rows and rows[0].split()[0] == "1"
    latte = events["Bob ordered an oat milk latte"]
    row = next(r for r in rows if latte["id"] in r)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(latte["ts"]))) + "Z"
    assert stamp in row and " s1 " in row
    for r in rows:
        assert display_col(r, r.split()[1]) == display_col(header, "kind")
        assert display_col(r, r.split()[2]) == display_col(header, " id ") + 1


def test_table_cjk_stays_aligned(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, _events = seeded
    res = recall(config, "乌龙茶")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    note = next(r for r in rows if "facts/tea" in r)
    assert " 茶 " in note and "乌龙茶" in note
    # The columns after a wide title start where the header says.
    for r in rows:
        assert display_col(r, re.split(" {2,}", r)[-1]) == display_col(header, "snippet"), (header, r)
        score = r.split()[3]
        assert display_col(r, score) + len(score) == display_col(header, "score") + len("score")  # right-aligned


def test_no_match_says_so(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, _ = seeded
    res = recall(config, "zyzzyva")
    assert (res.returncode, res.stdout.strip()) == (0, "no matches")
    assert recall_json(config, "zyzzyva") == []


# -- filters ----------------------------------------------------------------------------------------------
def test_kind_filter_and_repeat(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, _ = seeded
    assert {h["kind"] for h in recall_json(config, "oat milk", "--kind", "event")} == {"event"}
    assert {h["kind"] for h in recall_json(config, "oat milk", "--kind", "knowledge")} == {"knowledge"}
    assert {h["kind"] for h in recall_json(config, "oat milk", "--kind", "knowledge", "--kind", "event")} == \
        {"knowledge", "event"}


def test_bad_kind_is_a_usage_error(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, _ = seeded
    res = recall(config, "oat milk", "--kind", "notes")
    assert res.returncode == 2 and res.stdout == ""
    assert "Invalid value for '--kind'" in res.stderr and "'notes'" in res.stderr and "Traceback" not in res.stderr


def test_session_and_time_filters(seeded: tuple[Path, dict[str, Any]]) -> None:
    config, events = seeded
    hits = recall_json(config, "oat milk", "--session", "s2", "--kind", "event")
    assert [h["id"] for h in hits] == [events["Carol asked for oat milk in her tea"]["id"]]
    assert len(recall_json(config, "oat milk", "--since", "1h", "--kind", "event")) == 2
    assert recall_json(config, "oat milk", "--until", "2000-01-01") == []
    res = recall(config, "oat milk", "--since", "last tuesday")
    assert res.returncode == 2 and "Invalid value for '--since'" in res.stderr


# -- what a query sees ------------------------------------------------------------------------------------
def test_changes_not_indexed_yet_are_found_and_wait_lets_the_index_catch_up(dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["recall"] = {"indexer_interval_ms": 3_600_000}  # this service's indexer sleeps after its first look
    with MemoryService.from_config(cfg) as svc:
        assert wait_for(lambda: svc.recall_index.worker.stats.batches > 0 or svc.queue.initialized)
        time.sleep(0.2)
        rec = svc.append_event({"text": "a kumquat tart for dessert"}, "s9")
        assert svc.flush(60)
        assert wait_for(lambda: svc.store.count("recall_outbox") == 1)
    config = write_config(tmp_path, dsn)
    hits = recall_json(config, "kumquat", "--wait", "0")
    assert [h["id"] for h in hits] == [rec.event_id]  # scored from the outbox
    with MemoryService.from_config(cfg, start_writer=False, start_vault=False) as svc:
        assert svc.store.count("recall_outbox") == 1 and svc.store.count("recall_items") == 0
    assert [h["id"] for h in recall_json(config, "kumquat")] == [rec.event_id]
    with MemoryService.from_config(cfg, start_writer=False, start_vault=False) as svc:
        assert svc.store.count("recall_outbox") == 0 and svc.store.count("recall_items") == 1  # caught up


def test_unreachable_database_answers_from_the_vault(tmp_path: Path) -> None:
    vault = tmp_path / "vault" / "knowledge" / "facts"
    vault.mkdir(parents=True)
    (vault / "coffee.md").write_text(NOTES["facts/coffee"])
    config = write_config(tmp_path, f"mysql+pymysql://root@127.0.0.1:{closed_port()}/nodb")
    res = recall(config, "oat milk", "--json")
    assert res.returncode == 0, res.stderr
    assert [(h["kind"], h["id"]) for h in json.loads(res.stdout)] == [("knowledge", "facts/coffee")]
    assert "database unreachable" in res.stderr and "Traceback" not in res.stderr


def test_kill_switch_answers_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    res = recall(config, "oat milk", MEMORY_ENABLED="0")
    assert (res.returncode, res.stdout.strip()) == (0, "no matches") and "MEMORY_ENABLED=0" in res.stderr
    assert not (tmp_path / "m.db").exists()


def test_bad_config_is_one_clean_error(tmp_path: Path) -> None:
    res = recall(tmp_path / "nope.yaml", "oat milk")
    assert res.returncode == 1 and "config file not found" in res.stderr and "Traceback" not in res.stderr
