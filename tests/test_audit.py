"""The audit log: line format for every event type, JSON-safe fields, size rotation with N backups,
two real processes appending while rotating, faults (read-only folder, full disk, FIFO, directory)
that drop and count instead of raising or blocking, a full queue, a stuck writer, fork, the
reader's parsing (the config section and ``memory logs`` are in ``test_audit_cli.py``)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memory._audit import (DEAD_LETTER, DECAY_RUN, EVENT_TYPES, FORGET, MAX_LINE_BYTES, MAX_STRING_CHARS,
                           OUTAGE_END, OUTAGE_START, RECALL, REPLAY_END, REPLAY_START, RESTORE, VAULT_CONFLICT,
                           ZONE_CHANGE, AuditLog, NullAuditLog, backup_path, open_audit_log, query_field)
from memory._config import AuditConfig
from memory.cli._logs_cmds import Tally, log_files, parse_line

from .conftest import remount, wait_for

T0 = 1_700_000_000.0
REPO = Path(__file__).resolve().parents[1]


def cfg(path: Path, **kw: Any) -> AuditConfig:
    return AuditConfig(path=path, **kw)


def manual(path: Path, clock: Callable[[], float] = lambda: T0, **kw: Any) -> AuditLog:
    """A log whose writer this test drives (no thread)."""
    log = AuditLog(cfg(path, **{k: v for k, v in kw.items() if k in ("max_mb", "backups", "queue_size",
                                                                    "query_text")}),
                   clock=clock, **{k: v for k, v in kw.items() if k in ("monotonic", "write", "warn_interval_s",
                                                                       "retry_interval_s")})
    log.initialize()
    return log


def raw_lines(path: Path) -> list[bytes]:
    """Every line of the current file and its backups, oldest first (no line may be torn)."""
    out: list[bytes] = []
    for p in log_files(path):
        data = p.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{p} ends mid-line"
        out += data.splitlines()
    return out


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw_lines(path)]


def one_file(path: Path) -> list[int]:
    """The ``i`` of each line of this one file."""
    return [int(json.loads(line)["i"]) for line in path.read_bytes().splitlines()]


# -- the line ----------------------------------------------------------------------------------

def test_event_type_names_are_the_documented_ones() -> None:
    assert EVENT_TYPES == ("recall", "forget", "restore", "zone_change", "decay_run", "dead_letter",
                           "vault_conflict", "outage_start", "outage_end", "replay_start", "replay_end")
    assert (RECALL, FORGET, RESTORE, ZONE_CHANGE, DECAY_RUN, DEAD_LETTER, VAULT_CONFLICT, OUTAGE_START, OUTAGE_END,
            REPLAY_START, REPLAY_END) == EVENT_TYPES


@pytest.mark.parametrize("event", EVENT_TYPES)
def test_every_event_type_round_trips(tmp_path: Path, event: str) -> None:
    path = tmp_path / "a" / "audit.jsonl"  # the folder is created
    log = manual(path, clock=lambda: T0 + 0.25)
    fields = {"key": "notes/x.md", "count": 3, "ok": True, "ratio": 0.5, "nested": {"ids": [1, 2]}, "none": None}
    log.emit(event, **fields)
    assert log.loop_once() == 1
    [line] = raw_lines(path)
    entry = json.loads(line)
    assert entry == {"ts": T0 + 0.25, "time": "2023-11-14T22:13:20.250Z", "event": event, "pid": os.getpid(),
                     **fields}
    assert list(entry)[:4] == ["ts", "time", "event", "pid"]
    assert parse_line(line) == entry  # what `memory logs` reads
    assert log.stats()["written"] == 1
    log.close()


def test_fields_are_made_json_safe_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = manual(path)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    deep: Any = "bottom"
    for _ in range(20):
        deep = [deep]
    log.emit(RECALL, obj=object(), nan=float("nan"), inf=float("-inf"), raw=b"\xffbytes", tags={"b"},
             path=Path("/x/y"), when=dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc), bad=Unprintable(),
             huge_int=10 ** 5000, tuple_keys={(1, 2): "v"}, long="x" * (MAX_STRING_CHARS + 500),
             many=list(range(1000)), deep=deep, surrogate="a\udc80b", ts="spoof", event_="fine")
    log.emit(FORGET, blob=["y" * 900] * 100)  # ~90 kB: over the line bound
    log.loop_once()
    first, second = entries(path)
    assert first["obj"].startswith("<object object at")
    assert (first["nan"], first["inf"]) == ("nan", "-inf")
    assert first["raw"] == "\ufffdbytes" and first["tags"] == ["b"] and first["path"] == "/x/y"
    assert first["when"] == "2024-05-01T08:00:00+00:00"
    assert first["bad"] == "<unprintable Unprintable>"
    assert first["huge_int"] == "<int of 16610 bits>"
    assert first["tuple_keys"] == {"(1, 2)": "v"}
    assert first["long"] == "x" * MAX_STRING_CHARS + "…[truncated 500 chars]"
    assert len(first["many"]) == 101 and first["many"][-1] == "… 900 more"
    assert first["surrogate"] == "a?b"
    # The header stays truthful: a field named like it is kept under another name.
    assert (first["ts"], first["field_ts"], first["event"], first["event_"]) == (T0, "spoof", RECALL, "fine")
    depth, node = 0, first["deep"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert depth < 10 and isinstance(node, str)
    assert second["event"] == FORGET and second["truncated"] is True and "blob" not in second
    assert len(raw_lines(path)[1]) < MAX_LINE_BYTES
    assert log.stats()["dropped"]["error"] == 0
    log.close()


def test_emit_never_raises_even_for_a_broken_clock(tmp_path: Path) -> None:
    def clock() -> float:
        raise OSError("clock gone")

    log = manual(tmp_path / "broken.jsonl", clock=clock)
    log.emit(RECALL, x=1)
    assert log.stats()["dropped"]["error"] == 1 and log.loop_once() == 0
    log.close()
    log = manual(tmp_path / "audit.jsonl")
    log.emit(42, y=2)  # type: ignore[arg-type]  # a wrong type is written as its str
    log.loop_once()
    assert [e["event"] for e in entries(tmp_path / "audit.jsonl")] == ["42"]
    log.close()


def test_query_field_per_config(tmp_path: Path) -> None:
    import hashlib

    digest = hashlib.sha256("世界 hello".encode()).hexdigest()
    assert query_field("世界 hello", "hash") == {"query_sha256": digest}
    assert query_field("世界 hello", "text") == {"query": "世界 hello"}
    assert query_field("世界 hello", "none") == {}
    assert query_field("q" * 5000, "text")["query"].endswith("…[truncated 4000 chars]")
    assert query_field("a\udc80", "hash")["query_sha256"]  # never raises
    for mode, expected in (("hash", {"query_sha256": digest}), ("text", {"query": "世界 hello"}), ("none", {})):
        log = manual(tmp_path / f"{mode}.jsonl", query_text=mode)
        assert log.query_field("世界 hello") == expected
        log.emit(RECALL, k=5, **log.query_field("世界 hello"))
        log.loop_once()
        [entry] = entries(tmp_path / f"{mode}.jsonl")
        assert {k: v for k, v in entry.items() if k.startswith("query")} == expected
        log.close()


def test_disabled_log_has_the_same_api(tmp_path: Path) -> None:
    null = open_audit_log(AuditConfig(enabled=False, path=tmp_path / "audit.jsonl"))
    assert isinstance(null, NullAuditLog) and null.enabled is False
    null.emit(RECALL, x=1)
    assert null.query_field("q") == {} and null.loop_once() == 0
    assert null.stats()["written"] == 0 and set(null.stats()["dropped"]) == {"queue_full", "io_error", "closed",
                                                                          "error"}
    null.close()
    assert not (tmp_path / "audit.jsonl").exists()
    live = open_audit_log(AuditConfig(path=tmp_path / "audit.jsonl"))
    assert isinstance(live, AuditLog) and live.stats()["writer_running"]
    live.emit(OUTAGE_START, error="refused")
    live.close(timeout=10)
    assert [e["event"] for e in entries(tmp_path / "audit.jsonl")] == [OUTAGE_START]
    assert not live.stats()["writer_running"]
    live.emit(OUTAGE_END)  # after close: counted, not written
    assert live.stats()["dropped"]["closed"] == 1


# -- rotation ----------------------------------------------------------------------------------

def line_len(tmp_path: Path) -> int:
    probe = manual(tmp_path / "probe.jsonl")
    probe.emit(RECALL, i="000000")
    probe.loop_once()
    probe.close()
    return len((tmp_path / "probe.jsonl").read_bytes())


def test_rotation_keeps_n_backups_in_order_and_removes_the_oldest(tmp_path: Path) -> None:
    size = line_len(tmp_path)
    path = tmp_path / "audit.jsonl"
    log = manual(path, max_mb=(10 * size + 0.5) / (1 << 20), backups=3)
    for i in range(75):
        log.emit(RECALL, i=f"{i:06d}")
        log.loop_once()  # one line per write: the file fills to exactly ten lines
    log.close()
    assert sorted(p.name for p in tmp_path.glob("audit.jsonl*")) == [
        "audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3", "audit.jsonl.lock"]
    for n in (1, 2, 3):
        assert backup_path(path, n).stat().st_size == 10 * size
    assert path.stat().st_size == 5 * size
    assert log_files(path) == [backup_path(path, 3), backup_path(path, 2), backup_path(path, 1), path]
    # Lines 0..39 were in the backups that expired; the rest are in order, oldest file first.
    assert [int(e["i"]) for e in entries(path)] == list(range(40, 75))
    assert log.stats()["written"] == 75


def test_a_burst_is_split_so_no_file_grows_past_max(tmp_path: Path) -> None:
    size = line_len(tmp_path)
    path = tmp_path / "audit.jsonl"
    max_bytes = 10 * size
    log = manual(path, max_mb=(max_bytes + 0.5) / (1 << 20), backups=100)
    for i in range(500):
        log.emit(RECALL, i=f"{i:06d}")
    assert log.loop_once() == 500  # one batch, many writes
    log.close()
    assert all(p.stat().st_size <= max_bytes for p in log_files(path))
    assert len(log_files(path)) == 50
    assert [int(e["i"]) for e in entries(path)] == list(range(500))


def test_zero_backups_and_stale_backups(tmp_path: Path) -> None:
    size = line_len(tmp_path)
    path = tmp_path / "audit.jsonl"
    for n in range(1, 6):  # left by an earlier run that kept five
        backup_path(path, n).write_text("{}\n")
    log = manual(path, max_mb=(2 * size + 0.5) / (1 << 20), backups=0)
    for i in range(5):
        log.emit(RECALL, i=f"{i:06d}")
        log.loop_once()
    log.close()
    assert log_files(path) == [path]
    assert [int(e["i"]) for e in entries(path)] == [4]


def test_a_file_rotated_by_another_writer_is_reopened(tmp_path: Path) -> None:
    """Two logs on one path (separate descriptors and flocks, as two processes would have)."""
    size = line_len(tmp_path)
    path = tmp_path / "audit.jsonl"
    a = manual(path, max_mb=(3 * size + 0.5) / (1 << 20), backups=5)
    b = manual(path, max_mb=(3 * size + 0.5) / (1 << 20), backups=5)
    a.emit(RECALL, i="000000")
    a.loop_once()
    for i in range(1, 4):
        b.emit(RECALL, i=f"{i:06d}")
        b.loop_once()  # the fourth line rotates a's file away
    a.emit(RECALL, i="000004")
    a.loop_once()
    assert one_file(backup_path(path, 1)) == [0, 1, 2]
    assert one_file(path) == [3, 4]  # a followed the rotation
    a.close()
    b.close()


WRITER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from memory._audit import AuditLog, RECALL
    from memory._config import AuditConfig

    path, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    max_mb, backups = float(sys.argv[4]), int(sys.argv[5])
    log = AuditLog(AuditConfig(path=path, max_mb=max_mb, backups=backups, queue_size=20000)).start()
    go.with_name("ready-" + name).touch()
    while not go.exists():
        time.sleep(0.005)
    for i in range(10000):
        log.emit(RECALL, proc=name, seq=i, pad="p" * (i % 50))
        if i % 100 == 0:
            time.sleep(0.001)  # spread over a while, so the two processes overlap
    log.close(timeout=120)
    print(json.dumps(log.stats()))
""")


def test_two_processes_append_while_rotating_without_losing_or_tearing_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    go = tmp_path / "go"
    max_mb, backups = 32 * 1024 / (1 << 20), 400  # ~2.5 MB in 32 kB files: ~80 files, none expires
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(go), str(max_mb), str(backups)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("A", "B")]
    assert wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in "AB"), 120)
    go.touch()
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        stats.append(json.loads(out))
    for s in stats:
        assert s["written"] == 10000 and s["dropped"] == {"queue_full": 0, "io_error": 0, "closed": 0, "error": 0}
    files = log_files(path)
    assert 20 < len(files) <= backups  # rotated many times, and nothing expired
    assert not backup_path(path, backups).exists()
    seen: dict[str, list[int]] = {"A": [], "B": []}
    mixed = 0
    for f in files:
        data = f.read_bytes()
        assert data.endswith(b"\n")
        procs_in_file = set()
        for line in data.splitlines():
            entry = json.loads(line)  # a torn line would not parse
            assert entry["pad"] == "p" * (entry["seq"] % 50)
            seen[entry["proc"]].append(entry["seq"])
            procs_in_file.add(entry["proc"])
        mixed += len(procs_in_file) == 2
    # Every line exactly once, and each process's lines in order across the files (oldest first).
    assert seen == {"A": list(range(10000)), "B": list(range(10000))}
    assert mixed > 0, "the two processes never wrote into the same file: the test proved nothing"


# -- faults: dropped and counted, never raised, never blocking -----------------------------------

def test_full_disk_drops_counts_and_recovers_with_at_most_one_torn_line(
        tmp_path: Path, tmpfs: Callable[[int], Path]) -> None:
    mnt = tmpfs(64)
    path = mnt / "audit.jsonl"
    clock = [100.0]
    log = manual(path, monotonic=lambda: clock[0], retry_interval_s=1.0)
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    log.emit(DEAD_LETTER, key="k0")
    log.loop_once()
    s = log.stats()
    assert s["written"] == 0 and s["dropped"]["io_error"] == 1 and "No space left" in s["last_error"]
    # One page free: a burst is cut short in the middle of a line.
    os.truncate(filler, (filler.stat().st_size // 4096 - 1) * 4096)
    clock[0] += 2
    for i in range(100):
        log.emit(DEAD_LETTER, key=f"k{i:04d}", reason="x" * 40)
    assert log.loop_once() == 100
    s = log.stats()
    assert 0 < s["written"] < 100 and s["written"] + s["dropped"]["io_error"] == 101
    torn_written = s["written"]
    assert not path.read_bytes().endswith(b"\n")
    # Within the retry interval lines are dropped without touching the file system.
    filler.unlink()
    log.emit(DEAD_LETTER, key="during-backoff")
    log.loop_once()
    assert log.stats()["dropped"]["io_error"] == 101 - torn_written + 1
    clock[0] += 2
    for i in range(10):
        log.emit(DEAD_LETTER, key=f"after{i}")
    log.loop_once()
    assert log.stats()["written"] == torn_written + 10
    log.close()
    from memory.cli._logs_cmds import read_file

    tally = Tally()
    keys = [e["key"] for e in read_file(path, tally)]
    assert tally.malformed == 1  # the fragment, alone on its line
    assert keys == [f"k{i:04d}" for i in range(torn_written)] + [f"after{i}" for i in range(10)]


def test_read_only_folder(tmp_path: Path, tmpfs: Callable[[int], Path]) -> None:
    mnt = tmpfs(64)
    remount(mnt, "ro")
    log = manual(mnt / "sub" / "audit.jsonl")
    for i in range(3):
        log.emit(FORGET, key=f"n{i}")
    log.loop_once()
    s = log.stats()
    assert s["written"] == 0 and s["dropped"]["io_error"] == 3 and "Read-only" in s["last_error"]
    log.close()


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    log = manual(tmp_path / "plain" / "audit.jsonl")
    log.emit(FORGET, key="n")
    log.loop_once()
    assert log.stats()["dropped"]["io_error"] == 1
    log.close()


def test_directory_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir()
    log = manual(path)
    log.emit(ZONE_CHANGE, key="n", zone="cold")
    log.loop_once()
    s = log.stats()
    assert s["dropped"]["io_error"] == 1 and "directory" in s["last_error"]
    log.close()


@pytest.mark.parametrize("reader", [False, True])
def test_fifo_at_the_path_never_blocks_the_writer(tmp_path: Path, reader: bool) -> None:
    path = tmp_path / "audit.jsonl"
    os.mkfifo(path)
    # With a reader attached, opening the FIFO for writing would succeed: the type check refuses it.
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        log = AuditLog(cfg(path), retry_interval_s=0.0).start()
        for i in range(5):
            log.emit(REPLAY_START, n=i)
        assert wait_for(lambda: log.stats()["dropped"]["io_error"] == 5, 30)
        log.close(timeout=30)
        s = log.stats()
        assert not s["writer_running"] and s["written"] == 0 and "FIFO" in s["last_error"]
        if rfd is not None:
            assert os.read(rfd, 100) == b""  # nothing was written into the pipe (and no writer holds it)
    finally:
        if rfd is not None:
            os.close(rfd)


def test_io_errors_are_logged_once_per_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir()
    clock = [0.0]
    log = manual(path, monotonic=lambda: clock[0], warn_interval_s=30.0, retry_interval_s=0.0)
    caplog.set_level(logging.WARNING, logger="memory.audit")
    for _ in range(5):
        log.emit(VAULT_CONFLICT, key="k")
        clock[0] += 1
        log.loop_once()
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    clock[0] += 30
    log.emit(VAULT_CONFLICT, key="k")
    log.loop_once()
    lines = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(lines) == 2 and "similar suppressed" in lines[1]
    assert log.stats()["dropped"]["io_error"] == 6
    log.close()


def test_queue_full_drops_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = manual(tmp_path / "audit.jsonl", queue_size=5)
    for i in range(8):
        log.emit(DECAY_RUN, n=i)
    s = log.stats()
    assert s["queued"] == 5 and s["dropped"]["queue_full"] == 3
    caplog.set_level(logging.WARNING, logger="memory.audit")
    assert log.loop_once() == 5
    assert log.stats()["written"] == 5
    assert any("3 lines dropped (queue full)" in r.getMessage() for r in caplog.records)
    assert [e["n"] for e in entries(tmp_path / "audit.jsonl")] == [0, 1, 2, 3, 4]
    log.close()


class StuckWrite:
    """A write that blocks until released (a hung disk), in one process only."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self.pid = os.getpid()

    def __call__(self, fd: int, data: bytes) -> int:
        if os.getpid() == self.pid:
            self.entered += 1
            self.release.wait()
        return os.write(fd, data)


def test_emit_returns_while_the_writer_is_stuck_in_a_write(tmp_path: Path) -> None:
    stuck = StuckWrite()
    log = AuditLog(cfg(tmp_path / "audit.jsonl", queue_size=100), write=stuck).start()
    try:
        log.emit(OUTAGE_START, n=-1)
        assert wait_for(lambda: stuck.entered == 1, 30)
        for i in range(107):
            log.emit(OUTAGE_END, n=i)  # each returns although the writer is stuck
        assert stuck.entered == 1 and not stuck.release.is_set()
        s = log.stats()
        assert s["queued"] == 100 and s["dropped"]["queue_full"] == 7 and s["written"] == 0
    finally:
        stuck.release.set()
    log.close(timeout=30)
    s = log.stats()
    assert s["written"] == 101 and s["dropped"]["closed"] == 0
    assert [e["n"] for e in entries(tmp_path / "audit.jsonl")] == list(range(-1, 100))


def test_close_gives_up_on_a_stuck_writer_and_counts_the_rest(tmp_path: Path) -> None:
    stuck = StuckWrite()
    log = AuditLog(cfg(tmp_path / "audit.jsonl"), write=stuck).start()
    try:
        log.emit(REPLAY_START)
        assert wait_for(lambda: stuck.entered == 1, 30)
        for _ in range(3):
            log.emit(REPLAY_END)
        log.close(timeout=0.2)  # returns although the write never finishes
        log.emit(REPLAY_END)
        s = log.stats()
        assert s["dropped"]["closed"] == 4 and s["writer_running"]
    finally:
        stuck.release.set()
    assert wait_for(lambda: not log.stats()["writer_running"], 30)
    assert log.stats()["written"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_its_own_lines_not_the_parents(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    stuck = StuckWrite()
    log = AuditLog(cfg(path), write=stuck).start()
    log.emit(RECALL, who="parent", n=0)
    assert wait_for(lambda: stuck.entered == 1, 30)
    for n in (1, 2, 3):
        log.emit(RECALL, who="parent", n=n)  # queued in the parent at fork time
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            log.emit(RECALL, who="child", n=0)
            log.emit(RECALL, who="child", n=1)
            log.close(timeout=30)
            s = log.stats()
            code = 0 if s["written"] == 2 and s["dropped"]["closed"] == 0 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stuck.release.set()
    log.close(timeout=30)
    got = [(e["who"], e["n"], e["pid"]) for e in entries(path)]
    assert sorted(got) == sorted([("child", 0, pid), ("child", 1, pid)]
                                 + [("parent", n, os.getpid()) for n in range(4)])
