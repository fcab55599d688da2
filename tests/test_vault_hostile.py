"""Hostile vault content: YAML that expands, nests or will not build; symlinks out of (and within) the vault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import InvalidKeyError, MemoryService

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


def knowledge_keys(svc: MemoryService) -> set[str]:
    return set(svc.store.note_digests("knowledge"))


def alias_bomb(levels: int) -> str:
    """Each level is a list of nine references to the previous one: 9**levels leaves once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines)


# -- YAML front matter ---------------------------------------------------------------------------------
def test_alias_bomb_is_refused_and_the_body_stays_indexed(svc: MemoryService, tmp_path: Path) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    # Six levels keep the unfixed code fast enough to fail this test quickly; the report that
    # started this had nine (427 bytes → 254 MB of JSON).
    (facts / "bomb.md").write_text(f"---\n{alias_bomb(6)}\n---\n# Laughs\n\nthe body of the bomb\n")
    (facts / "anchor-only.md").write_text("---\nbase: &b {roast: dark}\ntitle: Anchors alone\n---\nbody\n")
    (facts / "fine.md").write_text("# Fine\n\nan ordinary note\n")
    report = svc.vault_sync()
    assert report.database_ok and report.new == 3
    row = svc.store.get_note("knowledge", "facts/bomb")
    assert row is not None and "the body of the bomb" in row["content"] and row["title"] == "Laughs"
    assert row["metadata_json"] is None  # nothing half-trusted lands in the metadata
    problems = svc.vault_check()["invalid"]
    assert "aliases (*l0) are not allowed" in problems["knowledge/facts/bomb.md"]
    note = svc.get_knowledge("facts/bomb")
    assert note is not None and note.metadata == {} and "aliases" in (note.invalid or "")
    anchors = svc.get_knowledge("facts/anchor-only")
    assert anchors is not None and anchors.metadata == {"base": {"roast": "dark"}, "title": "Anchors alone"}
    assert "facts/fine" in knowledge_keys(svc)


@pytest.mark.parametrize("front, reason", [
    ("deep: " + "[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
    ("when: 2024-13-45", "month must be in 1..12"),
    ("big: " + "9" * 5000, "Exceeds the limit"),
    ("run: !!python/object/apply:os.system [echo pwned]", "could not determine a constructor"),
    ("- just\n- a list", "front matter must be a mapping"),
])
def test_front_matter_that_cannot_be_built_is_reported_not_fatal(svc: MemoryService, tmp_path: Path, front: str,
                                                                 reason: str) -> None:
    facts = tmp_path / "vault" / "knowledge" / "facts"
    (facts / "hostile.md").write_text(f"---\n{front}\n---\n# Hostile\n\nstill searchable text\n")
    (facts / "neighbour.md").write_text("# Neighbour\n\nsynced in the same batch\n")
    report = svc.vault_sync()
    assert report.database_ok and {"facts/hostile", "facts/neighbour"} <= knowledge_keys(svc)
    assert reason in svc.vault_check()["invalid"]["knowledge/facts/hostile.md"]
    assert [n.key for n in svc.search_knowledge("still searchable")] == ["facts/hostile"]


def test_metadata_is_always_plain_json(svc: MemoryService, tmp_path: Path) -> None:
    text = ("---\n"
            "title: \"Caf\\ud800 notes\"\n"          # a lone surrogate: no database accepts it
            "day: 2024-05-01\n"
            "at: 2024-05-01 10:30:00\n"
            "nested: {2024-01-01: new year, 1.5: ratio, null: nothing, true: yes}\n"
            "raw: !!binary aGVsbG8=\n"
            "blob: !!binary //79\n"
            "kinds: !!set {robusta, arabica}\n"
            "ratio: .nan\n"
            "cap: -.inf\n"
            "1: one\n"
            "'1': the other one\n"
            "---\n# Heading\n\nbody\n")
    (tmp_path / "vault" / "knowledge" / "facts" / "typed.md").write_text(text, encoding="utf-8")
    report = svc.vault_sync()
    assert report.database_ok and "facts/typed" in knowledge_keys(svc)
    note = svc.get_knowledge("facts/typed")
    assert note is not None
    expected = {"title": "Caf\ufffd notes", "day": "2024-05-01", "at": "2024-05-01T10:30:00",
                "nested": {"2024-01-01": "new year", "1.5": "ratio", "null": "nothing", "true": True},
                "raw": "hello", "blob": "base64://79", "kinds": ["arabica", "robusta"], "ratio": "NaN",
                "cap": "-Infinity", "1": "the other one"}
    assert note.metadata == expected and note.title == "Caf\ufffd notes"
    json.dumps(note.metadata, allow_nan=False)  # strict JSON: no NaN, no datetime, no bytes
    row = svc.store.get_note("knowledge", "facts/typed")
    assert row is not None and json.loads(row["metadata_json"]) == expected
    assert "'1' appears twice" in svc.vault_check()["invalid"]["knowledge/facts/typed.md"]


# -- symbolic links -----------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    (out / "notes").mkdir(parents=True)
    (out / "secret.md").write_text("# Secret\n\nTOP-SECRET password list\n")
    (out / "notes" / "leaked.md").write_text("# Leaked\n\nTOP-SECRET folder note\n")
    return out


def test_symlinks_are_never_followed(svc: MemoryService, tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "vault"
    facts = root / "knowledge" / "facts"
    os.symlink(outside / "secret.md", facts / "leak.md")              # a note pointing outside
    os.symlink(outside / "notes", root / "knowledge" / "elsewhere")    # a folder pointing outside
    os.symlink(outside / "notes", facts / "nested")                     # one level deeper
    os.symlink("coffee.md", facts / "alias.md")                         # inside → inside: not a note either
    os.symlink(outside / "secret.md", root / "md" / "system2.md")       # a config pointing outside
    report = svc.vault_sync()
    assert report.database_ok
    everything = json.dumps([svc.store.get_note("knowledge", k) for k in knowledge_keys(svc)])
    assert "TOP-SECRET" not in everything
    assert not {"facts/leak", "facts/alias", "elsewhere/leaked", "facts/nested/leaked"} & knowledge_keys(svc)
    assert "system2" not in svc.store.note_digests("configs")
    invalid = dict(report.invalid)
    assert all("symbolic link" in invalid[f"knowledge/facts/{n}.md"] for n in ("leak", "alias"))
    problems = svc.vault_check()["invalid"]
    assert all("symbolic link" in problems[f] for f in ("knowledge/elsewhere/", "knowledge/facts/nested/"))
    assert "symbolic link" in problems["md/system2.md"]
    assert svc.vault.report()["unreadable_folders"] == ["knowledge/elsewhere/", "knowledge/facts/nested/"]
    listed = svc.list_knowledge()
    assert "TOP-SECRET" not in json.dumps([n.content for n in listed])
    assert {n.key for n in listed} == {"facts/coffee", "facts/decaf", "facts/weather", "experiences/first-chat"}
    assert svc.search_knowledge("TOP-SECRET") == []  # the database path
    svc.vault.db_pending = True
    assert svc.search_knowledge("TOP-SECRET") == []  # the file path
    for key in ("facts/leak", "facts/alias", "elsewhere/leaked", "facts/nested/leaked"):
        with pytest.raises(InvalidKeyError, match="symbolic link"):
            svc.get_knowledge(key)
        with pytest.raises(InvalidKeyError, match="symbolic link"):
            svc.upsert_knowledge(key, "overwritten through a link")
    with pytest.raises(InvalidKeyError, match="symbolic link"):
        svc.get_config("system2")
    assert (outside / "secret.md").read_text() == "# Secret\n\nTOP-SECRET password list\n"
    assert sorted(p.name for p in outside.rglob("*")) == ["leaked.md", "notes", "secret.md"]


def test_metadata_json_and_its_temp_file_are_not_followed(svc: MemoryService, tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "vault"
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (root / "metadata.json").unlink()
    os.symlink(outside / "secret.md", root / "metadata.json")            # read through a link: refused
    for tmp in (".metadata.json.tmp", f".metadata.json.{os.getpid()}.tmp"):  # where a temp copy may go
        os.symlink(victim, root / tmp)                                    # written through a link: refused
    svc.vault._loaded = False
    svc.vault._known.clear()
    svc.upsert_knowledge("facts/new", "# New\n\nforces metadata.json to be written")
    assert victim.read_text() == "precious"
    assert not (root / "metadata.json").is_symlink()
    assert "knowledge/facts/new.md" in json.loads((root / "metadata.json").read_text())["files"]


FLIPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
folder, a, b = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
print("ready", flush=True)
while True:
    if libc.renameat2(fd, a, fd, b, 2) != 0:  # RENAME_EXCHANGE
        sys.exit(ctypes.get_errno())
"""


def test_a_symlink_swapped_in_after_any_check_is_not_followed(svc: MemoryService, tmp_path: Path,
                                                              outside: Path) -> None:
    """Another process swaps a note and a link to a secret file back and forth, atomically, as fast
    as it can: whatever instant a read lands on, the secret must never come out."""
    facts = tmp_path / "vault" / "knowledge" / "facts"
    (facts / "flip.md").write_text("# Flip\n\ninside content\n")
    os.symlink(outside / "secret.md", facts / ".flip-link")  # hidden: never a note by itself
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(facts), "flip.md", ".flip-link"],
                               stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        assert flipper.stdout is not None and flipper.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 3.0
        rounds = 0
        while time.monotonic() < deadline or rounds < 50:
            rounds += 1
            try:
                note = svc.get_knowledge("facts/flip")
                seen.append(note.content if note else "")
            except InvalidKeyError:
                seen.append("refused")  # caught on a link: fine
            seen.append(json.dumps([n.content for n in svc.list_knowledge("facts")]))
            svc.vault_sync()
            row = svc.store.get_note("knowledge", "facts/flip")
            seen.append(row["content"] if row else "")
            if rounds >= 2000:
                break
    finally:
        flipper.kill()
        flipper.wait()
    assert flipper.returncode is not None and not any("TOP-SECRET" in s for s in seen)
    assert any("inside content" in s for s in seen)
