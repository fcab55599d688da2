"""Sync under trouble: unreadable files and folders (for real, as an unprivileged user), keys and
rows the database cannot hold, and changes within one timestamp tick."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import InvalidKeyError, MemoryService, load_config
from memory.store import create_store
from memory.vault import Known

from .conftest import service_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def vault_service(dsn: str, tmp_path: Path) -> Iterator[MemoryService]:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    svc = MemoryService.from_config(service_config(dsn, tmp_path), start_vault=False)
    svc.initialize()
    yield svc
    svc.close()


def rows(svc: MemoryService, table: str = "knowledge") -> dict[str, tuple[str, str]]:
    return svc.store.note_digests(table)


# -- unreadable files and folders, for real ----------------------------------------------------------
# The tests run as root, whom file permissions do not stop (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH).
# So the sync runs in a child that first drops those two capabilities from its bounding set and
# then execs the CLI: it is still root, but a folder or file with mode 000 is now really
# unreadable to it, exactly as to any other user.
DROP_AND_EXEC = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if os.geteuid() == 0:
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, "-m", "memory.cli", *sys.argv[1:]])
"""


class Unprivileged:
    def __init__(self, dsn: str, base: Path) -> None:
        self.dir = base
        self.vault = base / "vault"
        shutil.copytree(REPO / "vault", self.vault, ignore=shutil.ignore_patterns("metadata.json"))
        self.dsn = dsn
        self.config = base / "memory.yaml"
        self.config.write_text(json.dumps({"database": {"dsn": dsn}, "failure_queue": {"path": str(base / "q")},
                                           "vault": {"root_path": str(self.vault), "watch": False}}))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", DROP_AND_EXEC, "vault", *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=120, cwd=self.dir)

    def sync(self) -> dict[str, object]:
        done = self.cli("sync", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def rows(self) -> dict[str, tuple[str, str]]:
        store = create_store(load_config({"database": {"dsn": self.dsn}}).database)
        try:
            return store.note_digests("knowledge")
        finally:
            store.dispose()


@pytest.fixture
def unprivileged(dsn: str, tmp_path: Path) -> Iterator[Unprivileged]:
    u = Unprivileged(dsn, tmp_path)
    yield u
    for path in [u.vault, *u.vault.rglob("*")]:  # whatever a test left unreadable, pytest must remove
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_folder_that_cannot_be_listed_keeps_its_rows(unprivileged: Unprivileged) -> None:
    u = unprivileged
    assert u.sync()["new"] == 7
    facts = u.vault / "knowledge" / "facts"
    os.chmod(facts, 0)
    try:
        report = u.sync()
        assert report["deleted"] == 0 and report["moved"] == 0
        invalid = dict(report["invalid"])  # type: ignore[arg-type]
        assert set(invalid) >= {"knowledge/facts/coffee.md", "knowledge/facts/decaf.md", "knowledge/facts/weather.md"}
        assert "knowledge/facts, which cannot be opened: Permission denied; kept as last synced" in \
            invalid["knowledge/facts/coffee.md"]
        assert {"facts/coffee", "facts/decaf", "facts/weather", "experiences/first-chat"} <= set(u.rows())
        check = u.cli("check")
        assert check.returncode == 1  # rows cannot be verified against a folder nobody can read
        assert "invalid  knowledge/facts/: this folder cannot be opened: Permission denied" in check.stdout
        assert "orphan row" not in check.stdout
    finally:
        os.chmod(facts, 0o755)
    again = u.sync()
    assert again["deleted"] == 0 and again["invalid"] == [] and again["unchanged"] == 7
    assert u.cli("check").returncode == 0


def test_file_that_cannot_be_read_keeps_its_row(unprivileged: Unprivileged) -> None:
    u = unprivileged
    u.sync()
    coffee = u.vault / "knowledge" / "facts" / "coffee.md"
    coffee.write_text(coffee.read_text() + "\nchanged\n")  # must be re-read, and that read fails
    os.chmod(coffee, 0)
    try:
        report = u.sync()
        assert report["deleted"] == 0
        invalid = report["invalid"]
        assert ["knowledge/facts/coffee.md", "cannot read: Permission denied"] in invalid  # type: ignore[operator]
        assert "facts/coffee" in u.rows()
    finally:
        os.chmod(coffee, 0o644)
    assert u.sync()["modified"] == 1


# -- keys and rows the database cannot hold ----------------------------------------------------------
def test_note_whose_key_is_too_long_is_reported_and_the_rest_syncs(vault_service: MemoryService,
                                                                    tmp_path: Path) -> None:
    svc = vault_service
    deep = tmp_path / "vault" / "knowledge" / "facts" / ("a" * 100) / ("b" * 100)
    deep.mkdir(parents=True)
    (deep / ("c" * 100 + ".md")).write_text("# Long\n\nkey over the column length\n")
    (tmp_path / "vault" / "knowledge" / "facts" / "short.md").write_text("# Short\n\nfine\n")
    rel = f"knowledge/facts/{'a' * 100}/{'b' * 100}/{'c' * 100}.md"
    report = svc.vault_sync()
    assert report.database_ok and report.new == 8  # the sample's 7 and short.md, on MySQL too
    assert "facts/short" in rows(svc) and not any(len(k) > 255 for k in rows(svc))
    why = dict(report.invalid)[rel]
    assert "308 characters long; the database holds keys of at most 255" in why
    assert "at most 255" in svc.vault_check()["invalid"][rel]
    assert all(len(n.key) <= 255 for n in svc.list_knowledge())
    assert svc.vault_sync().database_ok and svc.health()["vault"]["database_behind"] is False
    with pytest.raises(InvalidKeyError, match="at most 255"):
        svc.upsert_knowledge("facts/" + "x" * 300, "too long")
    with pytest.raises(InvalidKeyError, match="longer than a file name"):
        svc.upsert_knowledge("facts/" + "咖" * 90, "a 270-byte file name")


def refuse_title(svc: MemoryService, title: str) -> None:
    """A real rule of the database (not a fake): it rejects knowledge rows with this title."""
    if svc.store.dialect == "sqlite":
        for when in ("INSERT", "UPDATE"):
            svc.store.execute(f"CREATE TRIGGER refuse_{when.lower()} BEFORE {when} ON knowledge "
                              f"WHEN NEW.title = '{title}' BEGIN SELECT RAISE(ABORT, 'refused title'); END")
    else:
        svc.store.execute(f"ALTER TABLE knowledge ADD CONSTRAINT refuse_title CHECK (title <> '{title}')")


def test_a_row_the_database_rejects_does_not_stop_the_others(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    refuse_title(svc, "Poison")
    facts = tmp_path / "vault" / "knowledge" / "facts"
    for i in range(5):
        (facts / f"good-{i}.md").write_text(f"# Good {i}\n\nantidote {i}\n")
    (facts / "poison.md").write_text("# Poison\n\nthe antidote is elsewhere\n")
    report = svc.vault_sync()
    assert report.database_ok
    assert {f"facts/good-{i}" for i in range(5)} <= set(rows(svc)) and "facts/poison" not in rows(svc)
    assert "rejected" in dict(report.invalid)["knowledge/facts/poison.md"]
    check = svc.vault_check()
    assert "not stored in the database: the database rejected it" in check["invalid"]["knowledge/facts/poison.md"]
    assert check["missing_rows"] == ["knowledge/facts/poison.md"] and check["ok"] is False
    assert svc.health()["vault"]["database_behind"] is False  # reachable and current: the note is refused
    assert svc.vault.report()["not_in_database"] == ["knowledge/facts/poison.md"]
    # The database search still finds it, from its file, ranked like the file search would.
    assert not svc.vault.db_pending
    from_db = [n.key for n in svc.search_knowledge("antidote", 10)]
    svc.vault.db_pending = True
    assert [n.key for n in svc.search_knowledge("antidote", 10)] == from_db  # the file path agrees
    svc.vault.db_pending = False
    assert "facts/poison" in [n.key for n in svc.search_knowledge("antidote", 10)]
    again = svc.vault.sync()  # the watcher's sync: not retried until the file changes...
    assert (again.new, again.modified) == (0, 0) and "knowledge/facts/poison.md" in svc.vault.problems()
    retried = svc.vault_sync()  # ...or a reconcile (start-up, `memory vault sync`) tries it once more
    assert retried.modified == 1 and "rejected" in svc.vault.problems()["knowledge/facts/poison.md"]
    # A service write of such a note lands in the file and is reported the same way.
    note = svc.upsert_knowledge("facts/poison-2", "# Poison\n\nwritten by the service")
    assert note.conflict_path is None and (facts / "poison-2.md").exists() and "facts/poison-2" not in rows(svc)
    assert "rejected" in svc.vault.problems()["knowledge/facts/poison-2.md"]
    (facts / "poison.md").write_text("# Cured\n\nthe antidote worked\n")
    fixed = svc.vault.sync()
    assert fixed.modified == 1 and "facts/poison" in rows(svc)
    assert "knowledge/facts/poison.md" not in svc.vault.problems()


def test_a_huge_title_is_refused_up_front_on_every_backend(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    (tmp_path / "vault" / "knowledge" / "facts" / "shouting.md").write_text("# " + "A" * 70_000 + "\n\nbody\n")
    report = svc.vault_sync()
    assert report.database_ok and "facts/coffee" in rows(svc) and "facts/shouting" not in rows(svc)
    assert "title is longer than the database holds" in dict(report.invalid)["knowledge/facts/shouting.md"]


# -- the (mtime, size) shortcut and racy files ---------------------------------------------------------
def test_a_change_in_the_same_timestamp_tick_is_not_missed(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    f = tmp_path / "vault" / "knowledge" / "facts" / "tick.md"
    stamp = time.time_ns() + 3600 * 10**9  # a clock skewed into the future, or `touch -d`
    f.write_text("# Tick\n\nfirst version\n")
    os.utime(f, ns=(stamp, stamp))
    svc.vault_sync()
    assert "first version" in svc.store.get_note("knowledge", "facts/tick")["content"]  # type: ignore[index]
    f.write_text("# Tick\n\nlater version\n")  # same size, same mtime: only the digest can tell
    os.utime(f, ns=(stamp, stamp))
    assert svc.vault_sync().modified == 1
    assert "later version" in svc.store.get_note("knowledge", "facts/tick")["content"]  # type: ignore[index]


def test_racy_rule_and_granularity() -> None:
    from memory.vault._scan import TICK_NS, granularity, is_racy

    second = 10**9
    assert granularity([]) == 2 * second  # unknown: assume the coarsest (FAT)
    assert granularity([1_700_000_000 * second, 1_700_000_002 * second]) == 2 * second
    assert granularity([1_700_000_001 * second]) == second
    assert granularity([1_700_000_001 * second, 1_700_000_001_250_000_000]) == 10**7
    assert granularity([1_700_000_001_250_000_123]) == 1
    t = 1_700_000_000 * second
    assert is_racy(t, t, 1) and is_racy(t + 5, t, 1)  # "now", or in the future
    assert is_racy(t - TICK_NS // 2, t, 1)  # within the kernel's coarse clock tick
    assert not is_racy(t - 2 * TICK_NS, t, 1)
    assert is_racy(t - second // 2, t, second)  # same second on a 1 s file system
    assert not is_racy(t - 3 * second, t, 2 * second)


def test_racy_files_are_rehashed_once_then_trusted(tmp_path: Path) -> None:
    from memory.vault._scan import TICK_NS, snapshot

    root = tmp_path / "vault"
    (root / "knowledge" / "facts").mkdir(parents=True)
    f = root / "knowledge" / "facts" / "a.md"
    f.write_text("# A\n\nbody\n")
    mtime = 1_700_000_000_123_456_789
    os.utime(f, ns=(mtime, mtime))
    rel = "knowledge/facts/a.md"
    first = snapshot(root, {}, 1 << 20, clock=lambda: mtime + TICK_NS // 2)
    assert first.states[rel].racy and rel in first.contents
    calm = snapshot(root, {}, 1 << 20, clock=lambda: mtime + 10 * TICK_NS)
    assert not calm.states[rel].racy
    digest = first.states[rel].digest or ""
    as_racy = {rel: Known(digest, -1, os.stat(f).st_size)}  # how a racy hash is recorded
    assert rel in snapshot(root, as_racy, 1 << 20).contents  # re-hashed
    trusted = {rel: Known(digest, mtime, os.stat(f).st_size)}
    assert rel not in snapshot(root, trusted, 1 << 20).contents  # the shortcut


def test_touch_refreshes_the_shortcut(vault_service: MemoryService, tmp_path: Path) -> None:
    svc = vault_service
    svc.vault_sync()
    f = tmp_path / "vault" / "knowledge" / "facts" / "coffee.md"
    past = os.stat(f).st_mtime_ns - 3600 * 10**9
    os.utime(f, ns=(past, past))  # same content, new mtime
    assert svc.vault_sync().unchanged == 7
    assert svc.vault._known["knowledge/facts/coffee.md"].mtime_ns == past  # shortcut usable again
    (tmp_path / "vault" / "metadata.json").unlink()
    svc.vault._loaded, svc.vault._known = False, {}
    assert svc.vault_sync().unchanged == 7  # rebuilt from the database: every file hashed once...
    assert all(k.mtime_ns >= 0 for k in svc.vault._known.values())  # ...then trusted again
    assert stat.S_ISREG(os.stat(tmp_path / "vault" / "metadata.json").st_mode)
