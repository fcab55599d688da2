"""The queue folder itself in trouble: full disk, permission denied, read-only, disk bound reached.

The service stays fail-open; what cannot be journaled waits in memory (bounded) and reaches the
database; only beyond that bound is a record dropped, and every drop is counted by reason.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import service_config

Factory = Callable[..., MemoryService]


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Factory]:
    """Services whose writer starts only when the test says so (records pile up first)."""
    made: list[MemoryService] = []

    def make(queue_root: Path, **queue: object) -> MemoryService:
        cfg = service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, **queue)
        cfg["failure_queue"]["path"] = str(queue_root)
        svc = MemoryService.from_config(cfg, start_writer=False)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close(timeout=5)


def test_no_space_left_on_the_queue_file_system(staged: Factory, tmpfs: Callable[[int], Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    mnt = tmpfs(1024)
    svc = staged(mnt / "queue", max_dump_file_size_mb=0.25, max_in_memory=300)
    with caplog.at_level(logging.WARNING, logger="memory"):
        ids = [svc.append_event({"i": i, "pad": "x" * 150}, "s").event_id for i in range(8000)]
    q = svc.health()["queue"]
    assert q["accepted"] == 8000
    assert q["dropped"].get("journal_error", 0) > 0  # the disk filled up and memory too
    assert "journal write failed" in caplog.text
    svc.queue.start()
    assert svc.flush(60)
    q = svc.health()["queue"]
    stored = svc.store.existing_ids("events", ids)
    assert len(stored) == q["committed"] == 8000 - q["dropped"]["journal_error"]
    assert svc.check() == []


def test_permission_denied_and_read_only_folder(staged: Factory, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "queue"
    svc = staged(root, max_dump_file_size_mb=0.01, max_in_memory=1000)
    real_open = os.open
    failure = {"errno": errno.EACCES}

    def failing_open(path: object, flags: int, *args: object, **kw: object) -> int:
        if str(path).startswith(str(root)) and str(path).endswith(".log"):
            raise OSError(failure["errno"], os.strerror(failure["errno"]), str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)  # the fault sits at the file layer only
    before = [svc.append_event({"i": i, "pad": "y" * 100}, "s").event_id for i in range(200)]
    failure["errno"] = errno.EROFS
    before += [svc.append_event({"i": i, "pad": "y" * 100}, "s").event_id for i in range(200)]
    q = svc.health()["queue"]
    assert q["pending_memory"] > 0 and q["accepted"] == 400
    monkeypatch.setattr(os, "open", real_open)
    svc.queue.journal.broken_until = 0.0
    after = [svc.append_event({"j": i}, "s").event_id for i in range(50)]
    svc.queue.start()
    assert svc.flush(60)
    q = svc.health()["queue"]
    assert q["dropped"] == {}  # memory held everything the disk refused
    assert svc.store.existing_ids("events", before + after) == set(before + after)
    assert svc.check() == []


def test_disk_bound_is_the_one_counted_drop(staged: Factory, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    svc = staged(tmp_path / "queue", max_dump_file_size_mb=0.1, max_disk_mb=0.35, max_in_memory=100)
    with caplog.at_level(logging.WARNING, logger="memory"):
        ids = [svc.append_event({"i": i, "pad": "z" * 200}, "s").event_id for i in range(5000)]
    q = svc.health()["queue"]
    assert q["dropped"].get("disk_full", 0) > 0
    assert "max_disk_mb" in caplog.text
    disk = sum(p.stat().st_size for p in (tmp_path / "queue").rglob("seg-*.log"))
    assert disk <= 0.35 * 1024 * 1024
    assert svc.health()["status"] == "degraded"
    svc.queue.start()
    assert svc.flush(60)
    q = svc.health()["queue"]
    assert len(svc.store.existing_ids("events", ids)) == q["committed"] == 5000 - q["dropped"]["disk_full"]
    assert svc.check() == []
