"""The pure planning step: what changed in the vault, decided without touching a file."""

from __future__ import annotations

from memory.vault import FileState, Known, plan


def st(path: str, digest: str | None, error: str | None = None) -> FileState:
    return FileState(path, 1, 10, digest, error)


def k(digest: str, synced: bool = True) -> Known:
    return Known(digest, 1, 10, synced)


def test_classifies_every_kind_of_change() -> None:
    current = {
        "knowledge/facts/a.md": st("knowledge/facts/a.md", "A"),          # unchanged
        "knowledge/facts/b.md": st("knowledge/facts/b.md", "B2"),         # modified
        "knowledge/facts/new.md": st("knowledge/facts/new.md", "N"),      # new
        "knowledge/tips/c.md": st("knowledge/tips/c.md", "C"),            # moved from facts/c.md
        "md/system.md": st("md/system.md", None, "cannot read: Permission denied"),  # unreadable
    }
    known = {
        "knowledge/facts/a.md": k("A"), "knowledge/facts/b.md": k("B1"), "knowledge/facts/c.md": k("C"),
        "knowledge/facts/gone.md": k("G"), "md/system.md": k("S"),
    }
    p = plan(current, known)
    assert p.unchanged == ("knowledge/facts/a.md",)
    assert p.modified == ("knowledge/facts/b.md",)
    assert p.new == ("knowledge/facts/new.md",)
    assert p.moved == (("knowledge/facts/c.md", "knowledge/tips/c.md"),)
    assert p.deleted == ("knowledge/facts/gone.md",)  # never md/system.md: unreadable means present
    assert p.invalid == (("md/system.md", "cannot read: Permission denied"),)
    assert p.changes == 4


def test_unsynced_file_is_modified_even_with_same_digest() -> None:
    p = plan({"md/x.md": st("md/x.md", "X")}, {"md/x.md": k("X", synced=False)})
    assert p.modified == ("md/x.md",)


def test_moves_pair_one_to_one_preferring_the_same_name() -> None:
    current = {"knowledge/b/same.md": st("knowledge/b/same.md", "D"), "knowledge/b/other.md": st("knowledge/b/other.md", "D"),
               "knowledge/b/third.md": st("knowledge/b/third.md", "D")}
    known = {"knowledge/a/same.md": k("D"), "knowledge/a/x.md": k("D")}
    p = plan(current, known)
    assert ("knowledge/a/same.md", "knowledge/b/same.md") in p.moved
    assert len(p.moved) == 2 and len(p.new) == 1 and p.deleted == ()


def test_empty_inputs() -> None:
    assert plan({}, {}).changes == 0
    p = plan({}, {"md/a.md": k("A")})
    assert p.deleted == ("md/a.md",)
