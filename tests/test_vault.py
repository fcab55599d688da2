"""The vault through the service: parsing, writes, conflicts, bad files, traversal, DB outages."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory import InvalidKeyError, MemoryService

from .conftest import service_config

REPO = Path(__file__).resolve().parents[1]
Make = Callable[..., MemoryService]


@pytest.fixture
def vault_service(dsn: str, tmp_path: Path) -> Iterator[MemoryService]:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    svc = MemoryService.from_config(service_config(dsn, tmp_path), start_vault=False)
    svc.initialize()
    yield svc
    svc.close()


def rows(svc: MemoryService, table: str) -> dict[str, tuple[str, str]]:
    return svc.store.note_digests(table)


def test_sync_parses_and_stores_every_note(vault_service: MemoryService) -> None:
    svc = vault_service
    report = svc.vault_sync()
    assert (report.new, report.database_ok) == (7, True)
    assert set(rows(svc, "configs")) == {"system", "users/alice", "users/bob"}
    assert set(rows(svc, "knowledge")) == {"facts/coffee", "facts/decaf", "facts/weather", "experiences/first-chat"}
    row = svc.store.get_note("knowledge", "facts/coffee")
    assert row is not None and row["title"] == "Morning coffee" and row["category"] == "facts"
    assert json.loads(row["tags"]) == ["coffee", "menu", "espresso"]
    assert json.loads(row["headings"]) == ["Morning coffee"]
    assert json.loads(row["links"]) == ["knowledge/facts/decaf.md"]
    exp = svc.get_knowledge("experiences/first-chat")
    assert exp is not None and exp.links == ("facts/decaf", "knowledge/facts/coffee.md")
    assert svc.get_system_prompt().startswith("# System prompt")  # type: ignore[union-attr]
    assert "美式咖啡" in (svc.get_user_profile("bob") or "")
    assert svc.get_user_profile("nobody") is None
    assert svc.vault_check()["ok"] is True
    again = svc.vault_sync()
    assert (again.new, again.modified, again.unchanged) == (0, 0, 7)


def test_writes_are_files_first_and_rows_follow(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    note = svc.upsert_knowledge("facts/tea", "# Tea\n\nGreen and black tea. #tea", {"title": "Tea", "tags": ["drinks"]})
    path = tmp_path / "vault" / "knowledge" / "facts" / "tea.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\ntitle: Tea\n") and "Green and black tea" in text
    assert note.title == "Tea" and note.tags == ("drinks", "tea") and note.conflict_path is None
    assert svc.store.get_note("knowledge", "facts/tea")["digest"] == note.digest  # type: ignore[index]
    svc.upsert_system_prompt("Be concise.")
    assert svc.get_system_prompt() == "Be concise.\n"
    svc.upsert_user_profile("carol", "Carol likes mocha.", {"language": "en"})
    assert "mocha" in (svc.get_user_profile("carol") or "")
    cfg = svc.upsert_config("prompts/greeting", "Hello!", {"channel": "web"})
    assert cfg.metadata == {"channel": "web"} and svc.get_config("prompts/greeting").content == "Hello!\n"  # type: ignore[union-attr]
    assert [n.key for n in svc.list_knowledge("facts")] == ["facts/coffee", "facts/decaf", "facts/tea", "facts/weather"]
    assert len(svc.list_knowledge()) == 5
    hits = svc.search_knowledge("caffeine", 5)
    assert hits and hits[0].key == "facts/decaf"
    assert [n.key for n in svc.search_knowledge("rooibos evening", 5)] == ["facts/decaf"]
    assert svc.search_knowledge("nonexistentword", 5) == []
    assert svc.delete_knowledge("facts/tea") is True
    assert not path.exists() and svc.store.get_note("knowledge", "facts/tea") is None
    assert svc.delete_knowledge("facts/tea") is False
    assert svc.vault_check()["ok"] is True


@pytest.mark.parametrize("key", ["../escape", "/etc/passwd", "facts/../../x", "a\x00b", "facts/.hidden",
                                 ".git/config", "facts/", "", "facts\\win", "facts/x~", "nocategory", "C:/x"])
def test_keys_that_would_escape_are_refused(vault_service: MemoryService, tmp_path: Path, key: str) -> None:
    before = sorted((tmp_path / "vault").rglob("*"))
    with pytest.raises(InvalidKeyError) as err:
        vault_service.upsert_knowledge(key, "x")
    assert isinstance(err.value, ValueError)
    with pytest.raises(InvalidKeyError):
        vault_service.get_knowledge(key)
    assert sorted((tmp_path / "vault").rglob("*")) == before  # nothing was written


def test_symlink_out_of_the_vault_and_bad_user_ids(vault_service: MemoryService, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "vault" / "knowledge" / "evil")
    with pytest.raises(InvalidKeyError, match="outside the vault"):
        vault_service.upsert_knowledge("evil/x", "pwned")
    assert list(outside.iterdir()) == []
    for uid in ("../bob", "a/b", "", None, "x\x00"):
        with pytest.raises(InvalidKeyError):
            vault_service.upsert_user_profile(uid, "x")  # type: ignore[arg-type]


def test_conflict_keeps_the_human_edit(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    path = tmp_path / "vault" / "knowledge" / "facts" / "coffee.md"
    human = path.read_text(encoding="utf-8") + "\nHuman addition.\n"
    path.write_text(human, encoding="utf-8")  # not synced yet
    note = svc.upsert_knowledge("facts/coffee", "service version")
    assert note.conflict_path is not None
    assert path.read_text(encoding="utf-8") == human  # untouched
    assert (tmp_path / "vault" / note.conflict_path).read_text(encoding="utf-8") == "service version\n"
    assert svc.health()["vault"]["conflicts"] == [note.conflict_path]
    assert svc.vault_check()["conflicts"] == [note.conflict_path] and svc.vault_check()["ok"] is False
    svc.vault_sync()  # the human's edit reaches the database; the conflict copy is not a note
    assert "Human addition" in svc.store.get_note("knowledge", "facts/coffee")["content"]  # type: ignore[index]
    assert "facts/coffee.md.conflict" not in json.dumps(rows(svc, "knowledge"))


def test_bad_files_are_reported_and_never_stop_the_rest(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    facts = tmp_path / "vault" / "knowledge" / "facts"
    (facts / "broken-yaml.md").write_text("---\ntitle: [oops\n---\n# Still indexed\n\nbody text\n")
    (facts / "latin1.md").write_bytes("# Caf\xe9 notes\n\ncr\xe8me".encode("latin-1"))
    (facts / "huge.md").write_text("# Huge\n" + "x" * (1100 * 1024))
    (facts / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    (facts / "picture.png").write_bytes(b"\x89PNG\x00")
    (facts / "notes.txt").write_text("not markdown")
    report = svc.vault_sync()
    assert report.database_ok
    keys = set(rows(svc, "knowledge"))
    assert {"facts/broken-yaml", "facts/latin1", "facts/coffee"} <= keys
    assert not {"facts/huge", "facts/binary", "facts/picture", "facts/notes"} & keys
    broken = svc.store.get_note("knowledge", "facts/broken-yaml")
    assert broken is not None and broken["title"] == "Still indexed" and "body text" in broken["content"]
    latin = svc.store.get_note("knowledge", "facts/latin1")
    assert latin is not None and "Caf\ufffd" in latin["title"]
    problems = svc.vault_check()["invalid"]
    assert "invalid YAML front matter" in problems["knowledge/facts/broken-yaml.md"]
    assert "not valid UTF-8" in problems["knowledge/facts/latin1.md"]
    assert "max_file_size_kb" in problems["knowledge/facts/huge.md"]
    assert "binary" in problems["knowledge/facts/binary.md"]
    assert "knowledge/facts/picture.png" not in problems


def test_metadata_json_lost_or_corrupt_is_rebuilt(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    meta = tmp_path / "vault" / "metadata.json"
    (tmp_path / "vault" / "knowledge" / "facts" / "weather.md").unlink()
    meta.write_text("{corrupt")
    svc.vault._loaded = False  # as a fresh process would see it
    report = svc.vault_sync()
    assert report.deleted == 1 and "facts/weather" not in rows(svc, "knowledge")
    assert json.loads(meta.read_text())["version"] == 1
    meta.unlink()
    svc.vault._loaded = False
    svc.vault._known.clear()
    report = svc.vault_sync()
    assert report.unchanged == 6 and report.new == 0  # the database says what was synced
    assert svc.vault_check()["ok"] is True and meta.exists()


def test_reads_work_while_the_database_is_down_and_it_catches_up(tmp_path: Path) -> None:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    db = tmp_path / "m.db"
    cfg = service_config(f"sqlite:///{db}", tmp_path)
    cfg["database"]["sqlite_busy_timeout"] = 0.05
    svc = MemoryService.from_config(cfg, start_vault=False)
    try:
        svc.initialize()
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        assert svc.vault_sync().database_ok is False
        assert svc.get_system_prompt() is not None  # from the file
        note = svc.upsert_knowledge("facts/new", "# New\n\nwritten while the DB was locked")
        assert (tmp_path / "vault" / "knowledge" / "facts" / "new.md").exists() and note.conflict_path is None
        assert svc.health()["vault"]["database_behind"] is True
        locker.execute("ROLLBACK")
        locker.close()
        report = svc.vault_sync()
        assert report.database_ok
        assert "facts/new" in rows(svc, "knowledge") and len(rows(svc, "knowledge")) == 5
        assert svc.health()["vault"]["database_behind"] is False
    finally:
        svc.close()


def test_reindex_tool_rebuilds_rows_from_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    db = tmp_path / "r.db"
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"database:\n  dsn: sqlite:///{db}\nvault:\n  root_path: {tmp_path / 'vault'}\n"
                   f"failure_queue:\n  path: {tmp_path / 'q'}\n")
    run = [sys.executable, str(REPO / "tools" / "memory_reindex.py"), "reindex", "--config", str(cfg), "--json",
           "--rebuild-vault"]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    conn = sqlite3.connect(db)
    conn.execute("UPDATE knowledge SET content = 'stale'")  # the index drifted
    conn.commit()
    conn.close()
    again = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["vault"]["notes"] == 7
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM knowledge WHERE content = 'stale'").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM knowledge").fetchone()[0] == 4
    conn.close()
