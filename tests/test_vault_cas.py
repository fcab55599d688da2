"""Service writes never overwrite (or delete) a human's save, even one landing between the check and the rename.

The race is real but lasts microseconds, so these tests place the human's save exactly inside
it: a wrapper around the system call the write path makes at that moment (the fsync of the
temporary file, the open that verifies what was displaced, the rename or unlink of a delete)
performs the save first. The save itself is an ordinary file operation, as an editor makes it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService

from .conftest import service_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def svc(dsn: str, tmp_path: Path) -> Iterator[MemoryService]:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    service = MemoryService.from_config(service_config(dsn, tmp_path), start_vault=False)
    service.initialize()
    service.vault_sync()
    yield service
    service.close()


def save(path: Path, text: str, how: str) -> None:
    """A human's save: replace by rename (vim, JetBrains, sed -i, git) or rewrite in place (VS Code)."""
    if how == "rename":
        tmp = path.with_name("sedA1b2C3")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as fh:
            fh.write(text)


def once_before(monkeypatch: pytest.MonkeyPatch, names: str, when: Callable[..., bool],
                action: Callable[[], None]) -> list[bool]:
    """Run ``action`` once, just before the first call of any ``os.<name>`` (names separated by
    spaces) for which ``when`` holds."""
    fired: list[bool] = []
    for name in names.split():
        real = getattr(os, name)

        def wrapper(*args: Any, real: Any = real, **kwargs: Any) -> Any:
            if not fired and when(*args, **kwargs):
                fired.append(True)
                action()
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)
    return fired


def is_temp_of(folder: Path) -> Callable[..., bool]:
    def when(fd: int, *_: Any, **__: Any) -> bool:
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        return os.path.dirname(where) == str(folder) and os.path.basename(where).startswith(".") \
            and where.endswith(".tmp")
    return when


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("sed"))


@pytest.mark.parametrize("how", ["rename", "in-place"])
def test_a_save_between_the_check_and_the_rename_is_kept(svc: MemoryService, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    path = facts / "coffee.md"
    human = "# Coffee\n\nthe human's edit, saved at the worst moment\n"
    # The CAS check has passed (the file is as last synced) and our temporary file is being synced.
    fired = once_before(monkeypatch, "fsync", is_temp_of(facts), lambda: save(path, human, how))
    note = svc.upsert_knowledge("facts/coffee", "service version")
    monkeypatch.undo()
    assert fired
    assert path.read_text() == human
    assert note.conflict_path is not None
    assert (tmp_path / "vault" / note.conflict_path).read_text() == "service version\n"
    assert svc.health()["vault"]["conflicts"] == [note.conflict_path]
    assert leftovers(facts) == []
    svc.vault_sync()
    assert "worst moment" in svc.store.get_note("knowledge", "facts/coffee")["content"]  # type: ignore[index]


def test_a_second_save_while_the_first_is_put_back_wins(svc: MemoryService, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    path = facts / "coffee.md"
    first, second = "# Coffee\n\nfirst human save\n", "# Coffee\n\nsecond human save, the newest\n"
    once_before(monkeypatch, "fsync", is_temp_of(facts), lambda: save(path, first, "rename"))

    def verifying(name: object, flags: int = 0, *_: Any, **__: Any) -> bool:  # reads what was displaced
        return isinstance(name, str) and name.startswith(".memory-") and not flags & os.O_CREAT

    fired = once_before(monkeypatch, "open", verifying, lambda: save(path, second, "rename"))
    note = svc.upsert_knowledge("facts/coffee", "service version")
    monkeypatch.undo()
    assert fired
    assert path.read_text() == second  # the human's newest save is in place
    assert note.conflict_path is not None
    assert (tmp_path / "vault" / note.conflict_path).read_text() == "service version\n"
    assert leftovers(facts) == []


def test_a_new_note_created_meanwhile_is_not_replaced(svc: MemoryService, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    path = facts / "fresh.md"
    once_before(monkeypatch, "fsync", is_temp_of(facts), lambda: save(path, "# Fresh\n\nhuman first\n", "rename"))
    note = svc.upsert_knowledge("facts/fresh", "service version")
    monkeypatch.undo()
    assert path.read_text() == "# Fresh\n\nhuman first\n"
    assert note.conflict_path is not None and leftovers(facts) == []


def test_a_save_between_the_check_and_the_delete_is_kept(svc: MemoryService, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    path = facts / "decaf.md"
    human = "# Decaf\n\nkept: the human saved just before the delete\n"

    def on_the_note(src: object, *_: Any, **__: Any) -> bool:
        return str(src) in (str(path), "decaf.md")

    # The check has passed; the save lands just before the call that takes the file away.
    fired = once_before(monkeypatch, "rename unlink", on_the_note, lambda: save(path, human, "rename"))
    deleted = svc.delete_knowledge("facts/decaf")
    monkeypatch.undo()
    assert fired and deleted is False
    assert path.read_text() == human
    assert leftovers(facts) == []
    svc.vault_sync()
    assert "kept" in svc.store.get_note("knowledge", "facts/decaf")["content"]  # type: ignore[index]


def test_delete_and_write_still_work_without_a_race(svc: MemoryService, tmp_path: Path) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    assert svc.delete_knowledge("facts/decaf") is True and not (facts / "decaf.md").exists()
    note = svc.upsert_knowledge("facts/coffee", "replaced by the service")
    assert note.conflict_path is None and (facts / "coffee.md").read_text() == "replaced by the service\n"
    assert svc.store.get_note("knowledge", "facts/coffee")["digest"] == note.digest  # type: ignore[index]
    assert leftovers(facts) == [] and svc.vault_check()["ok"] is True
