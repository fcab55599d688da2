"""Forgetting a real note file: into ``.trash/<date>/`` and back, never unlinked, never overwritten.

The note is written as a Markdown file and synced by the real vault; forgetting moves the file
into the trash (the vault's next sync sees it gone and keeps it gone), restore moves it back and
queues it for the recall index; hostile paths are refused before anything moves; a process that
stopped between the tombstone and the move is completed by the next run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory._config import VaultConfig
from memory.decay import Decay, DecayConfig
from memory.decay._trash import TrashError, TrashMissing, TrashReplaced, move_to_trash, restore_from_trash
from memory.vault import Vault

from .test_decay import DAY, T0, decay_store

NOTE = "---\ntitle: Tea\ntags: [drinks]\n---\n# Tea\n\nGreen tea is best at 80 degrees.\n"


@pytest.fixture
def env(dsn: str, tmp_path: Path) -> Iterator[tuple[Any, Vault, Path]]:
    store = decay_store(dsn)
    root = tmp_path / "vault"
    (root / "knowledge" / "facts").mkdir(parents=True)
    vault = Vault(VaultConfig(root_path=root, watch=False), store)
    try:
        yield store, vault, root
    finally:
        store.dispose()


def test_forget_moves_the_note_to_the_trash_and_restore_brings_it_back(env: tuple[Any, Vault, Path]) -> None:
    store, vault, root = env
    note = root / "knowledge" / "facts" / "tea.md"
    note.write_text(NOTE, encoding="utf-8")
    inode = note.stat().st_ino
    assert vault.sync().new == 1
    store.add_edges([("facts/tea", "facts/other", "links_to", 1.0, T0)], None)
    d = Decay(store, DecayConfig(enabled=True), vault_root=root)
    res = d.forget("facts/tea", "outdated", now=T0)
    assert res.ok and res.kind == "knowledge"
    assert res.trash_path == ".trash/2023-11-14/knowledge/facts/tea.md"
    trashed = root / res.trash_path
    assert not note.exists() and trashed.read_text(encoding="utf-8") == NOTE
    assert trashed.stat().st_ino == inode  # the same file, moved: never copied, never unlinked
    assert store.get_note("knowledge", "facts/tea") is None and store.edges("facts/tea", "both") == []
    (tomb,) = store.tombstones_of("facts/tea")
    assert (tomb.file_state, tomb.reason, tomb.payload["path"]) == ("trashed", "outdated", "knowledge/facts/tea.md")
    # The vault does not sync the trash back (a hidden folder) and the note stays gone.
    vault.sync()
    assert store.get_note("knowledge", "facts/tea") is None
    with store._raw_write() as cur:
        cur.execute("DELETE FROM recall_outbox")
    res = d.restore("facts/tea", now=T0 + DAY)
    assert res.ok, res.message
    assert note.read_text(encoding="utf-8") == NOTE and not trashed.exists() and note.stat().st_ino == inode
    row = store.get_note("knowledge", "facts/tea")
    assert row is not None and row["title"] == "Tea" and row["path"] == "knowledge/facts/tea.md"
    assert store._fetch("SELECT kind, item_id FROM recall_outbox", ()) == [("knowledge", "facts/tea")]
    assert store.tombstones_of("facts/tea") == []
    report = vault.sync()
    assert store.get_note("knowledge", "facts/tea") is not None and not report.invalid


def test_a_name_clash_in_the_trash_gets_a_suffix_and_restore_never_overwrites(env: tuple[Any, Vault, Path]) -> None:
    store, vault, root = env
    note = root / "knowledge" / "facts" / "tea.md"
    note.write_text(NOTE, encoding="utf-8")
    vault.sync()
    # An earlier forget of the same path on the same day left its file in the trash.
    earlier = root / ".trash" / "2023-11-14" / "knowledge" / "facts" / "tea.md"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier tea note\n", encoding="utf-8")
    (earlier.parent / "tea~1.md").write_text("and another\n", encoding="utf-8")
    d = Decay(store, DecayConfig(enabled=True), vault_root=root)
    res = d.forget("facts/tea", now=T0)
    assert res.ok and res.trash_path == ".trash/2023-11-14/knowledge/facts/tea~2.md"
    assert earlier.read_text(encoding="utf-8") == "an earlier tea note\n"
    assert (earlier.parent / "tea~1.md").read_text(encoding="utf-8") == "and another\n"
    # A note written at the original place since: restore is refused, nothing is replaced.
    note.write_text("a new note\n", encoding="utf-8")
    res = d.restore("facts/tea")
    assert not res.ok and "exists again" in res.message
    assert note.read_text(encoding="utf-8") == "a new note\n"
    assert (earlier.parent / "tea~2.md").read_text(encoding="utf-8") == NOTE
    assert store.tombstones_of("facts/tea")[0].file_state == "trashed"
    note.unlink()
    assert d.restore("facts/tea").ok and note.read_text(encoding="utf-8") == NOTE


def test_hostile_paths_are_refused_before_anything_moves(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    (root / "knowledge" / "facts").mkdir(parents=True)
    (root / "md").mkdir()
    (root / "md" / "system.md").write_text("config", encoding="utf-8")
    outside = tmp_path / "outside.md"
    outside.write_text("not yours", encoding="utf-8")
    (root / "knowledge" / "evil").symlink_to(tmp_path)
    for rel in ("../outside.md", "/etc/passwd", "knowledge/../../outside.md", "md/system.md", "knowledge/x.md",
                "knowledge/evil/outside.md", "knowledge/facts/\x00.md", "knowledge\\facts\\a.md",
                "knowledge/.hidden/a.md", "", "other/facts/a.md"):
        with pytest.raises(TrashError):
            move_to_trash(root, rel, T0)
    with pytest.raises(TrashMissing):
        move_to_trash(root, "knowledge/facts/none.md", T0)
    assert outside.read_text(encoding="utf-8") == "not yours" and (root / "md" / "system.md").exists()
    assert not (root / ".trash").exists()
    (root / "knowledge" / "facts" / "a.md").write_text("a", encoding="utf-8")
    moved = move_to_trash(root, "knowledge/facts/a.md", T0)
    for trash_rel in ("../outside.md", ".trash/../outside.md", "knowledge/facts/a.md", ".trash"):
        with pytest.raises(TrashError):
            restore_from_trash(root, trash_rel, "knowledge/facts/a.md")
    with pytest.raises(TrashError):
        restore_from_trash(root, moved, "md/system.md")
    restore_from_trash(root, moved, "knowledge/facts/a.md")
    assert (root / "knowledge" / "facts" / "a.md").read_text(encoding="utf-8") == "a"


def test_a_forget_stopped_before_the_file_moved_is_completed_by_the_next_run(env: tuple[Any, Vault, Path]) -> None:
    store, vault, root = env
    note = root / "knowledge" / "facts" / "tea.md"
    note.write_text(NOTE, encoding="utf-8")
    vault.sync()
    # What a process killed between the commit and the move leaves: a pending tombstone, the file in place.
    with store._raw_write() as cur:
        rows = store.source_rows(cur, "knowledge", ["facts/tea"])
        store.tombstone(cur, "knowledge", rows, {"facts/tea": 4}, "auto-forget", T0, "pending")
    assert note.exists() and len(store.pending_trash(10)) == 1
    d = Decay(store, DecayConfig(enabled=True), vault_root=root)
    section, problems = d.health(now=T0)
    assert section["pending_trash"] == 1 and any("wait to be moved" in p for p in problems)
    report = d.run(now=T0 + DAY)
    assert report.trash_failures == () and not note.exists()
    assert (root / ".trash" / "2023-11-14" / "knowledge" / "facts" / "tea.md").read_text(encoding="utf-8") == NOTE
    assert store.pending_trash(10) == [] and store.tombstones_of("facts/tea")[0].file_state == "trashed"


def test_auto_forget_of_a_note_moves_its_file(env: tuple[Any, Vault, Path]) -> None:
    store, vault, root = env
    (root / "knowledge" / "facts" / "old.md").write_text("---\nzone: cloud\n---\nold news\n", encoding="utf-8")
    (root / "knowledge" / "facts" / "kept.md").write_text("---\nzone: 4\npinned: true\n---\nkeep\n", encoding="utf-8")
    vault.sync()
    d = Decay(store, DecayConfig(enabled=True), vault_root=root)
    d.run(now=T0)
    report = d.run(now=T0 + 181 * DAY)
    assert report.forgotten == ("facts/old",) and report.protected == 1
    assert not (root / "knowledge" / "facts" / "old.md").exists()
    assert (root / "knowledge" / "facts" / "kept.md").exists()
    assert len(list((root / ".trash").rglob("old.md"))) == 1
    assert os.listdir(root / ".trash") == ["2024-05-13"]


def test_a_new_note_written_at_a_forgotten_notes_path_is_never_moved(env: tuple[Any, Vault, Path]) -> None:
    # Regression: a pending move took whatever file sat at the tombstone's path, so a note a person
    # had written there since the forget went to the trash in place of the forgotten one.
    store, vault, root = env
    note = root / "knowledge" / "facts" / "tea.md"
    note.write_text(NOTE, encoding="utf-8")
    vault.sync()
    with store.transaction() as cur:  # forgotten; the process stopped before the file moved
        rows = store.source_rows(cur, "knowledge", ["facts/tea"])
        store.tombstone(cur, "knowledge", rows, {"facts/tea": 4}, "auto-forget", T0, "pending")
    note.write_text("# Tea, again\n\nA new note about tea.\n", encoding="utf-8")
    clock = [T0 + DAY]
    d = Decay(store, DecayConfig(enabled=True), vault_root=root, clock=lambda: clock[0])
    report = d.run_leased("me")
    assert report is not None and report.forgotten == ()
    ((item, why),) = report.trash_failures
    assert item == "facts/tea" and "different file" in why and "left in place" in why
    assert note.read_text(encoding="utf-8") == "# Tea, again\n\nA new note about tea.\n"
    assert not (root / ".trash").exists() or not list((root / ".trash").rglob("*.md"))
    (tomb,) = store.tombstones_of("facts/tea")
    assert (tomb.file_state, tomb.trash_path) == ("replaced", None)
    assert store.pending_trash(10) == []  # settled: not retried on every run
    section, problems = d.health()
    assert section["replaced_files"] == 1 and section["pending_trash"] == 0
    assert any("left the files of 1 forgotten notes in place" in p for p in problems), problems
    # The forgotten version is still restorable from its tombstone; the new file is not touched.
    assert d.restore("facts/tea").ok
    assert note.read_text(encoding="utf-8") == "# Tea, again\n\nA new note about tea.\n"


def test_move_to_trash_checks_the_digest_through_the_new_name(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "vault"
    (root / "knowledge" / "facts").mkdir(parents=True)
    note = root / "knowledge" / "facts" / "a.md"
    note.write_text("the new one", encoding="utf-8")
    old = hashlib.sha256(b"the forgotten one").hexdigest()
    with pytest.raises(TrashReplaced):
        move_to_trash(root, "knowledge/facts/a.md", T0, expect_digest=old)
    assert note.read_text(encoding="utf-8") == "the new one" and not list((root / ".trash").rglob("*.md"))
    same = hashlib.sha256(b"the new one").hexdigest()
    moved = move_to_trash(root, "knowledge/facts/a.md", T0, expect_digest=same)
    assert (root / moved).read_text(encoding="utf-8") == "the new one" and not note.exists()
