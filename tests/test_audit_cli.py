"""The ``audit:`` config section and ``memory logs`` (filters, JSON, malformed lines, --follow
across rotation). The log itself is tested in ``test_audit.py``, whose helpers these reuse."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import ConfigError, load_config
from memory._audit import EVENT_TYPES, FORGET, RECALL, backup_path
from memory._config import AuditConfig, Config, DatabaseConfig, FailureQueueConfig, LoggingConfig, VaultConfig
from memory.cli._logs_cmds import Follower, Tally, log_files

from .test_audit import REPO, line_len, manual

# -- config ------------------------------------------------------------------------------------

def write_config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "memory.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_config_defaults_and_paths(tmp_path: Path) -> None:
    a = AuditConfig()
    assert (a.enabled, a.max_mb, a.backups, a.queue_size, a.query_text) == (True, 16.0, 5, 10_000, "hash")
    assert a.max_bytes == 16 << 20
    loaded = load_config(write_config(tmp_path, "audit:\n")).audit
    assert loaded == AuditConfig(path=tmp_path / ".memory" / "audit.jsonl")
    sub = tmp_path / "conf"
    sub.mkdir()
    custom = load_config(write_config(sub, "audit:\n  enabled: 'off'\n  path: ../logs/a.jsonl\n  max_mb: 0.5\n"
                                           "  backups: 0\n  queue_size: '7'\n  query_text: text\n")).audit
    assert custom == AuditConfig(enabled=False, path=tmp_path / "logs" / "a.jsonl", max_mb=0.5, backups=0,
                                 queue_size=7, query_text="text")
    by_hand = Config(database=DatabaseConfig(dsn="sqlite:///x.db"), vault=VaultConfig(root_path=tmp_path),
                     failure_queue=FailureQueueConfig(path=tmp_path), logging=LoggingConfig(), vector={}, graph={},
                     decay={}, health={})
    assert by_hand.audit == AuditConfig()


def test_shipped_config_documents_every_key() -> None:
    import yaml

    shipped = REPO / "config" / "memory.yaml"
    section = yaml.safe_load(shipped.read_text())["audit"]
    assert set(section) == {"enabled", "path", "max_mb", "backups", "queue_size", "query_text"}
    cfg_ = load_config(shipped)
    assert cfg_.audit.path == (REPO / ".memory" / "audit.jsonl").resolve()
    assert cfg_.audit.query_text == "hash" and not [w for w in cfg_.warnings if w.startswith("audit")]


@pytest.mark.parametrize("body, key, expected", [
    ("enabled: maybe", "audit.enabled", "true or false"),
    ("path: ''", "audit.path", "a non-empty string"),
    ("max_mb: 0", "audit.max_mb", "a number in (0, 1000000]"),
    ("max_mb: lots", "audit.max_mb", "a number in (0, 1000000]"),
    ("backups: -1", "audit.backups", "an integer in 0..1000"),
    ("backups: 2.5", "audit.backups", "an integer in 0..1000"),
    ("queue_size: 0", "audit.queue_size", "an integer in 1..10000000"),
    ("query_text: plain", "audit.query_text", "one of hash, text, none"),
    ("[1, 2]", "audit", "a mapping"),
])
def test_config_errors_name_the_key(tmp_path: Path, body: str, key: str, expected: str) -> None:
    text = f"audit: {body}\n" if body.startswith("[") else f"audit:\n  {body}\n"
    p = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.key == key
    assert str(info.value).startswith(f"{p}: {key}: expected {expected}, got ")


def test_unknown_audit_key_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="memory.config")
    loaded = load_config(write_config(tmp_path, "audit:\n  max_mbs: 3\n"))
    assert loaded.warnings == ("audit.max_mbs",)
    assert "audit.max_mbs" in caplog.text


# -- memory logs -------------------------------------------------------------------------------

def logs_config(tmp_path: Path, **audit: Any) -> Path:
    lines = "".join(f"  {k}: {v}\n" for k, v in {"path": "logs/audit.jsonl", **audit}.items())
    return write_config(tmp_path, "audit:\n" + lines)


def run_logs(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMORY_CONFIG"}
    return subprocess.run([sys.executable, "-m", "memory.cli", "logs", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[Path, float]]:
    """Twenty entries over the last ~20 hours, across three rotated files, plus two malformed lines."""
    config = logs_config(tmp_path, max_mb=800 / (1 << 20), backups=10)
    path = tmp_path / "logs" / "audit.jsonl"
    now = time.time()
    when = [0.0]
    log = manual(path, clock=lambda: when[0], max_mb=800 / (1 << 20), backups=10)
    for i in range(20):
        when[0] = now - (20 - i) * 3600 + 60
        log.emit(EVENT_TYPES[i % 3], i=i, note=f"entry {i}")
        log.loop_once()
    log.close()
    assert len(log_files(path)) >= 3
    with open(backup_path(path, 1), "ab") as fh:
        fh.write(b"not json\n[1, 2]\n")
    yield config, now


def test_logs_prints_the_last_entries_in_time_order_and_counts_malformed_lines(
        history: tuple[Path, float]) -> None:
    config, _ = history
    res = run_logs(config)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 20
    assert [int(line.split(" i=")[1].split()[0]) for line in lines] == list(range(20))
    assert "recall" in lines[0] and 'note="entry 0"' in lines[0] and f"pid={os.getpid()}" in lines[0]
    assert "skipped 2 malformed lines" in res.stderr


def test_logs_filters_limit_and_json(history: tuple[Path, float]) -> None:
    config, now = history
    res = run_logs(config, "--json", "--limit", "3")
    assert [json.loads(line)["i"] for line in res.stdout.splitlines()] == [17, 18, 19]
    res = run_logs(config, "--json", "--limit", "0", "--event", "forget", "--event", "restore")
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["i"] for e in got] == [i for i in range(20) if i % 3 in (1, 2)]
    assert {e["event"] for e in got} == {"forget", "restore"}
    assert all(set(e) >= {"ts", "time", "event", "pid"} for e in got)
    res = run_logs(config, "--json", "--since", "5h")
    assert [json.loads(line)["i"] for line in res.stdout.splitlines()] == [15, 16, 17, 18, 19]
    iso = dt.datetime.fromtimestamp(now - 3 * 3600, dt.timezone.utc).replace(tzinfo=None).isoformat()
    res = run_logs(config, "--json", "--since", iso)
    assert [json.loads(line)["i"] for line in res.stdout.splitlines()] == [17, 18, 19]
    res = run_logs(config, "--json", "--since", str(now - 2 * 3600), "--event", "recall")
    assert [json.loads(line)["i"] for line in res.stdout.splitlines()] == [18]
    res = run_logs(config, "--since", "yesterday-ish")
    assert res.returncode == 2 and "--since" in res.stderr
    res = run_logs(config, "--event", "recal")
    assert res.returncode == 2 and "recal" in res.stderr


def test_logs_without_a_file(tmp_path: Path) -> None:
    res = run_logs(logs_config(tmp_path))
    assert res.returncode == 0 and res.stdout == "" and "no audit log at" in res.stderr


def test_follower_reads_every_file_rotated_between_two_polls(tmp_path: Path) -> None:
    size = line_len(tmp_path)
    path = tmp_path / "audit.jsonl"
    log = manual(path, max_mb=(2 * size + 0.5) / (1 << 20), backups=20)
    log.emit(RECALL, i="000000")
    log.loop_once()
    tally = Tally()
    tail = Follower(path, tally)
    assert tail.open() and [int(e["i"]) for e in tail.drain()] == [0]
    for i in range(1, 10):  # four rotations before the next poll
        log.emit(RECALL, i=f"{i:06d}")
        log.loop_once()
    assert [int(e["i"]) for e in tail.poll()] == list(range(1, 10))
    assert tail.poll() == []
    # A line still being written waits for its newline; a junk line is counted, not shown.
    with open(path, "ab") as fh:
        fh.write(b'{"ts": 1.5, "event": "forget"')
    assert tail.poll() == [] and tally.malformed == 0
    with open(path, "ab") as fh:
        fh.write(b', "pid": 1}\nnot json\n')
    assert tail.poll() == [{"ts": 1.5, "event": "forget", "pid": 1}] and tally.malformed == 1
    tail.close()
    log.close()


def test_logs_follow_picks_up_new_lines_across_rotation(tmp_path: Path) -> None:
    size = line_len(tmp_path)
    max_mb = (4 * size + 0.5) / (1 << 20)
    config = logs_config(tmp_path, max_mb=max_mb, backups=50)
    path = tmp_path / "logs" / "audit.jsonl"
    log = manual(path, max_mb=max_mb, backups=50)
    for i in range(2):
        log.emit(RECALL, i=f"{i:06d}")
        log.loop_once()
    env = {k: v for k, v in os.environ.items() if k != "MEMORY_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "memory.cli", "logs", "--config", str(config), "--follow",
                             "--json", "--event", "recall"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: [out.put(line) for line in stdout], daemon=True).start()

    def take(n: int) -> list[int]:
        got = []
        for _ in range(n):
            got.append(int(json.loads(out.get(timeout=60))["i"]))
        return got

    try:
        assert take(2) == [0, 1]
        for i in range(2, 5):
            log.emit(RECALL, i=f"{i:06d}")
            log.loop_once()
        assert take(3) == [2, 3, 4]
        # Several rotations at once between two polls, and lines the filter leaves out.
        for i in range(5, 30):
            log.emit(RECALL if i % 5 else FORGET, i=f"{i:06d}")
            log.loop_once()
        assert take(20) == [i for i in range(5, 30) if i % 5]
        assert len(log_files(path)) > 5
    finally:
        log.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err
