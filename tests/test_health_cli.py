"""``memory health``: exit 0 ok, 1 degraded (or starting), 2 down — each from a real state — and
``health()`` never says ``ok`` while the schema is not at head.

Every CLI case runs the real command in a subprocess against a real database (or a real absence
of one): a fresh SQLite file; a SQLite file another connection holds an exclusive lock on;
MariaDB behind the fault proxy resetting every connection; a port nothing listens on; a SQLite
path that cannot be opened; an invalid config; the migration lock held by another process.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import ConfigError, HealthConfig, MemoryService, load_config
from memory._health import DEGRADED, OK, STARTING, HealthFacts, Probe, assess, unreachable, verdict

from .conftest import service_config, wait_for
from .test_unreachable import closed_port


def write_config(root: Path, dsn: str, **database: Any) -> Path:
    db = "".join(f"  {k}: {v}\n" for k, v in database.items())
    path = root / "memory.yaml"
    path.write_text(f"database:\n  dsn: '{dsn}'\n  connect_timeout: 2\n  read_timeout: 5\n  write_timeout: 5\n{db}"
                    f"failure_queue:\n  path: {root / 'queue'}\n  retry_base_delay_s: 0.05\n"
                    f"vault:\n  root_path: {root / 'vault'}\n  watch: false\n"
                    f"logging:\n  warn_interval_s: 0\n")
    return path


def run_health(config: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MEMORY_DATABASE_DSN", "MEMORY_ENABLED", "MEMORY_CONFIG")}
    res = subprocess.run([sys.executable, "-m", "memory.cli", "health", "--config", str(config), "--json", *extra],
                         capture_output=True, text=True, timeout=120, env=env)
    try:
        out = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"no JSON report (exit {res.returncode}): {res.stdout!r} {res.stderr[-2000:]!r}")
    return res.returncode, out, res.stderr


# -- ok -------------------------------------------------------------------------------------------------
def test_ok_exits_0(tmp_path: Path) -> None:
    code, out, err = run_health(write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"))
    assert (code, out["status"]) == (0, "ok"), (out, err)
    assert out["database"]["schema_ready"] is True and out["database"]["reachable"] is True
    assert out["pending"] == 0 and out["reasons"] == []


# -- degraded -------------------------------------------------------------------------------------------
@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[Path]:
    """A SQLite file another connection holds an exclusive lock on (rollback journal: readers wait too)."""
    path = tmp_path / "m.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE other_app (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other_app VALUES (1)")
    try:
        yield path
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_sqlite_locked_by_another_connection_is_degraded_exit_1(tmp_path: Path, locked_sqlite: Path) -> None:
    code, out, err = run_health(write_config(tmp_path, f"sqlite:///{locked_sqlite}", sqlite_busy_timeout=0.3))
    assert (code, out["status"]) == (1, DEGRADED), (out, err)
    assert out["database"]["reachable"] is False and out["database"]["connectable"] is True
    assert "locked" in out["database"]["error"]
    assert any("does not answer" in r for r in out["reasons"])


@pytest.mark.integration
def test_mariadb_resetting_every_connection_is_degraded_exit_1(tmp_path: Path, proxy: tuple[Any, str]) -> None:
    p, dsn = proxy
    p.set_mode("refuse")  # accepts the TCP connection, then resets it: the server is there but refuses
    code, out, err = run_health(write_config(tmp_path, dsn))
    assert (code, out["status"]) == (1, DEGRADED), (out, err)
    assert out["database"]["reachable"] is False and out["database"]["connectable"] is True
    assert p.connections > 0


def test_migration_lock_held_elsewhere_is_starting_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open(f"{db}.migrate-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is upgrading the schema
        code, out, err = run_health(write_config(tmp_path, f"sqlite:///{db}"), "--wait", "0.5")
    assert (code, out["status"]) == (1, STARTING), (out, err)
    assert out["database"]["reachable"] is True and out["database"]["schema_ready"] is False
    assert out["service_status"] == STARTING


# -- down ----------------------------------------------------------------------------------------------
def test_nothing_listening_is_down_exit_2(tmp_path: Path) -> None:
    code, out, err = run_health(write_config(tmp_path, f"mysql+pymysql://root@127.0.0.1:{closed_port()}/x"))
    assert (code, out["status"]) == (2, "down"), (out, err)
    assert out["database"]["connectable"] is False and "unreachable" in out["reasons"][0]
    assert out["service_status"] == DEGRADED  # the running service itself is fail-open: degraded


def test_sqlite_file_that_cannot_be_opened_is_down_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    code, out, err = run_health(write_config(tmp_path, f"sqlite:///{blocker / 'm.db'}"))
    assert (code, out["status"]) == (2, "down"), (out, err)
    assert out["database"]["connectable"] is False


def test_invalid_config_is_down_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "memory.yaml"
    bad.write_text("failure_queue:\n  max_retries: abc\n")
    code, out, err = run_health(bad)
    assert (code, out["status"]) == (2, "down"), (out, err)
    assert "max_retries" in out["reasons"][0] and "cannot start" in out["reasons"][0]


# -- health() itself -----------------------------------------------------------------------------------
def test_health_never_says_ok_before_the_schema_is_at_head(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with open(f"{db}.migrate-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the writer's upgrade blocks here, for real
        svc = MemoryService.from_config(service_config(f"sqlite:///{db}", tmp_path), start_vault=False)
        try:
            h = svc.health()
            assert h["database"]["schema_ready"] is False and h["database"]["reachable"] is True
            assert h["status"] == STARTING and h["status"] != OK
            assert any("schema is not at head" in w for w in h["warnings"])
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)  # let the writer finish before closing
    assert wait_for(lambda: svc.queue.initialized, 30)
    assert svc.health()["status"] == OK and svc.health()["warnings"] == []
    svc.close()
    assert svc.health()["status"] == "closed"


def test_assess_and_verdict_rules() -> None:
    fine = HealthFacts(closed=False, reachable=True, schema_ready=True)
    assert assess(fine).status == OK
    assert assess(HealthFacts(closed=False, reachable=True, schema_ready=False)).status == STARTING
    assert assess(HealthFacts(closed=False, reachable=False, schema_ready=False)).status == DEGRADED
    assert assess(HealthFacts(closed=False, reachable=True, schema_ready=True, dropped={"disk_full": 0})).status == OK
    for bad in (dict(pending_disk=3), dict(dropped={"closed": 1}), dict(quarantined=1), dict(conflicts=2),
                dict(journal_problem="ENOSPC")):
        assert assess(HealthFacts(closed=False, reachable=True, schema_ready=True, **bad)).status == DEGRADED
    assert assess(HealthFacts(closed=True, reachable=False, schema_ready=True)).status == "closed"
    assert verdict(None, None, "boom").exit_code == 2
    assert verdict({"status": "closed"}).exit_code == 2
    assert verdict({"status": OK}).exit_code == 0
    assert verdict({"status": STARTING, "warnings": ["w"]}) == verdict({"status": STARTING, "warnings": ["w"]})
    assert verdict({"status": STARTING}).exit_code == 1
    assert verdict({"status": DEGRADED}, Probe(False, True, "reset")).exit_code == 1
    assert verdict({"status": DEGRADED}, Probe(False, False, "refused")).exit_code == 2
    assert unreachable(ConnectionRefusedError(111, "refused")) and not unreachable(ConnectionResetError(104, "reset"))
    wrapped = RuntimeError("driver")
    wrapped.__cause__ = ConnectionRefusedError(111, "refused")
    assert unreachable(wrapped)


def test_health_reports_latency_and_the_schema_revision(tmp_path: Path) -> None:
    code, out, err = run_health(write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}"))
    db = out["database"]
    assert code == 0 and db["schema_revision"] == db["schema_head"] and db["schema_head"], out
    assert isinstance(db["latency_ms"], float) and db["latency_ms"] >= 0


def test_a_plug_in_whose_health_check_raises_degrades_and_is_named(tmp_path: Path) -> None:
    svc = MemoryService.from_config(service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path), start_vault=False)
    try:
        assert wait_for(lambda: svc.health()["status"] == OK, 30), svc.health()

        class Broken:  # a plug-in whose health() fails (the contract's only fault here)
            def health(self) -> tuple[dict[str, Any], tuple[str, ...]]:
                raise RuntimeError("index state unreadable")

            def stop(self, timeout: float | None = 5.0) -> None:
                pass

        real, svc.graph = svc.graph, Broken()  # type: ignore[assignment]
        h = svc.health()
        assert h["status"] == "degraded" and h["graph"]["error"].endswith("index state unreadable")
        assert any("graph plug-in" in w for w in h["warnings"]), h["warnings"]
        svc.graph = real
        assert svc.health()["status"] == OK
    finally:
        svc.close()


def test_health_thresholds_come_from_the_health_section(tmp_path: Path) -> None:
    slow = HealthFacts(closed=False, reachable=True, schema_ready=True, latency_ms=40.0, latency_warn_ms=25.0)
    assert assess(slow).status == DEGRADED and "40 ms" in assess(slow).warnings[0]
    assert assess(dataclasses.replace(slow, latency_warn_ms=50.0)).status == OK
    backlog = HealthFacts(closed=False, reachable=True, schema_ready=True, pending_disk=99, backlog_warn=100)
    assert assess(backlog).status == OK and assess(dataclasses.replace(backlog, pending_disk=100)).status == DEGRADED
    # The section is validated like every other one: file, key, expected, found.
    bad = tmp_path / "bad.yaml"
    bad.write_text("health:\n  latency_warn_ms: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*health\.latency_warn_ms.*a number > 0.*fast"):
        load_config(bad)
    assert load_config({}).health == HealthConfig()
    # Through the real service and the real command: any round trip is slower than a microsecond.
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    config.write_text(config.read_text() + "health:\n  latency_warn_ms: 0.001\n")
    code, out, err = run_health(config)
    assert code == 1 and out["status"] == "degraded", (out, err)
    assert any("answers slowly" in r and "health.latency_warn_ms" in r for r in out["reasons"]), out["reasons"]
