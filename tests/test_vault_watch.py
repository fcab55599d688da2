"""The live watcher with a real watchdog observer, against how editors really save files."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import service_config, wait_for

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture
def live(dsn: str, tmp_path: Path) -> Iterator[tuple[MemoryService, Path]]:
    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    cfg = service_config(dsn, tmp_path)
    cfg["vault"].update({"watch": True, "debounce_ms": 100})
    svc = MemoryService.from_config(cfg)
    assert wait_for(lambda: svc._watcher.observer is not None and not svc.vault.db_pending)
    yield svc, tmp_path / "vault"
    svc.close()


def content(svc: MemoryService, key: str) -> str | None:
    row = svc.store.get_note("knowledge", key)
    return None if row is None else row["content"]


def keys(svc: MemoryService) -> set[str]:
    return set(svc.store.note_digests("knowledge"))


def test_vim_save(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    f = root / "knowledge" / "facts" / "coffee.md"
    probe = f.parent / "4913"
    probe.write_text("")
    probe.unlink()
    backup = f.with_name("coffee.md~")
    os.rename(f, backup)
    f.write_text("# Morning coffee\n\nedited in vim\n")
    backup.unlink()
    (f.parent / ".coffee.md.swp").write_bytes(b"b0VIM swap")
    assert wait_for(lambda: "edited in vim" in (content(svc, "facts/coffee") or ""))
    assert keys(svc) == {"facts/coffee", "facts/decaf", "facts/weather", "experiences/first-chat"}


def test_vscode_truncate_and_write_in_two_parts(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    f = root / "knowledge" / "facts" / "decaf.md"
    with open(f, "w", encoding="utf-8") as fh:  # truncate in place
        fh.write("# Decaf\n\nfirst half, ")
        fh.flush()
        os.fsync(fh.fileno())
        time.sleep(0.05)
        fh.write("second half\n")
    assert wait_for(lambda: content(svc, "facts/decaf") == "# Decaf\n\nfirst half, second half\n")


def test_jetbrains_safe_write(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    f = root / "knowledge" / "facts" / "weather.md"
    tmp = f.with_name("weather.md___jb_tmp___")
    old = f.with_name("weather.md___jb_old___")
    tmp.write_text("# Weather\n\nsaved by an IDE\n")
    os.rename(f, old)
    os.rename(tmp, f)
    old.unlink()
    assert wait_for(lambda: "saved by an IDE" in (content(svc, "facts/weather") or ""))
    assert "facts/weather" in keys(svc) and len(keys(svc)) == 4


def test_sed_in_place_and_emacs_lock(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    f = root / "knowledge" / "facts" / "coffee.md"
    os.symlink("user@host.1234:1700000000", f.parent / ".#coffee.md")  # emacs lock file
    tmp = f.parent / "sedAb12Cd"
    tmp.write_text(f.read_text().replace("flat white", "cortado"))
    os.rename(tmp, f)
    assert wait_for(lambda: "cortado" in (content(svc, "facts/coffee") or ""))
    (f.parent / ".#coffee.md").unlink()
    assert len(keys(svc)) == 4


def test_move_between_categories_and_delete(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    (root / "knowledge" / "tips").mkdir()
    os.rename(root / "knowledge" / "facts" / "weather.md", root / "knowledge" / "tips" / "weather.md")
    assert wait_for(lambda: "tips/weather" in keys(svc) and "facts/weather" not in keys(svc))
    assert svc.store.get_note("knowledge", "tips/weather")["category"] == "tips"  # type: ignore[index]
    (root / "knowledge" / "facts" / "decaf.md").unlink()
    assert wait_for(lambda: "facts/decaf" not in keys(svc))


def test_burst_of_500_files_is_a_few_batches(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    before = svc._watcher.syncs
    folder = root / "knowledge" / "bulk"
    folder.mkdir()
    for i in range(500):
        (folder / f"note-{i:03d}.md").write_text(f"# Note {i}\n\nbulk body {i} [[facts/coffee]]\n")
    assert wait_for(lambda: len(keys(svc)) == 504, timeout=120)
    assert svc._watcher.syncs - before <= 10  # coalesced, not one sync per file
    assert svc.vault_check()["ok"] is True


def test_own_writes_cause_no_resync(live: tuple[MemoryService, Path]) -> None:
    svc, root = live
    svc.upsert_knowledge("facts/own", "# Own\n\nwritten by the service")
    stamp = svc.store.get_note("knowledge", "facts/own")["updated_at"]  # type: ignore[index]
    syncs = svc._watcher.syncs
    assert wait_for(lambda: svc._watcher.syncs > syncs)  # the watcher saw the file event...
    assert svc.vault.last_sync is not None and svc.vault.last_sync.modified == 0  # ...and found nothing to do
    assert svc.store.get_note("knowledge", "facts/own")["updated_at"] == stamp  # type: ignore[index]


def test_cli_vault_watch_runs_until_ctrl_c(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from memory import load_config
    from memory.store import create_store

    shutil.copytree(REPO / "vault", tmp_path / "vault", ignore=shutil.ignore_patterns("metadata.json"))
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"database:\n  dsn: sqlite:///{tmp_path / 'w.db'}\nvault:\n  root_path: {tmp_path / 'vault'}\n"
                   f"  debounce_ms: 50\nfailure_queue:\n  path: {tmp_path / 'q'}\n")
    proc = subprocess.Popen([sys.executable, "-m", "memory.cli", "vault", "watch", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and "watching" in proc.stderr.readline()
        store = create_store(load_config({"database": {"dsn": f"sqlite:///{tmp_path / 'w.db'}"}}).database)
        f = tmp_path / "vault" / "knowledge" / "facts" / "coffee.md"
        f.write_text("# Coffee\n\nedited while watching\n")

        def synced() -> bool:
            try:
                row = store.get_note("knowledge", "facts/coffee")
            except Exception:  # noqa: BLE001 - the schema may not exist yet
                return False
            return row is not None and "edited while watching" in row["content"]

        assert wait_for(synced)
        store.dispose()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped" in err and "Traceback" not in err


def test_edits_during_a_long_initial_sync_reach_the_database(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "vault"
    shutil.copytree(REPO / "vault", root, ignore=shutil.ignore_patterns("metadata.json"))
    bulk = root / "knowledge" / "bulk"
    bulk.mkdir()
    for i in range(4000):  # a cold sync that takes a while, for real
        (bulk / f"note-{i:04d}.md").write_text(f"# Note {i}\n\n{'body text ' * 80}{i}\n")
    live = root / "md" / "live.md"  # md/ is scanned first: the sync reads it long before it ends
    cfg = service_config(dsn, tmp_path)
    cfg["vault"].update({"watch": True, "debounce_ms": 100})
    svc = MemoryService.from_config(cfg)

    def syncing() -> bool:  # a sync holds the vault's lock from start to end
        if svc.vault.lock.acquire(blocking=False):
            svc.vault.lock.release()
            return False
        return True

    try:
        assert wait_for(syncing)
        for n in range(1, 11):  # edits while the initial sync runs, after it has read the file
            live.write_text(f"# Live\n\nedit number {n}\n")
            time.sleep(0.01)
        assert syncing()  # the last edit landed during the initial sync
        final = live.read_text()

        def caught_up() -> bool:
            row = svc.store.get_note("configs", "live")
            return row is not None and row["content"] == final and not svc.vault.db_pending

        assert wait_for(caught_up)
        assert len(keys(svc)) == 4004 and svc.vault_check()["ok"] is True
    finally:
        svc.close()
