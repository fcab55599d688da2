"""Shared fixtures: real SQLite files, a real MariaDB database per test, services that reconcile.

MySQL tests are marked ``integration``. When the server is unreachable they skip with a reason
that says how to run them, except under ``CI=true``, where an unreachable server fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService

MYSQL_URL = os.environ.get("MEMORY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _mysql_error() -> str | None:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_URL)
    try:
        conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                               password=url.password or "", connect_timeout=3)
        conn.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


_MYSQL_STATE: dict[str, str | None] = {}


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``cond`` until it holds or a generous deadline passes (tests never assert on time)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def require_mysql() -> None:
    if "error" not in _MYSQL_STATE:
        _MYSQL_STATE["error"] = _mysql_error()
    err = _MYSQL_STATE["error"]
    if err is None:
        return
    msg = (f"MySQL/MariaDB not reachable at {MYSQL_URL} ({err}). Start it (e.g. "
           "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`) or set "
           "MEMORY_TEST_MYSQL_URL=mysql+pymysql://user:pass@host:port")
    if IN_CI:
        pytest.fail("CI requires the MySQL tests to run: " + msg, pytrace=False)
    pytest.skip(msg)


def mysql_admin(sql: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_URL)
    conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def mysql_dsn() -> Iterator[str]:
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
    require_mysql()
    name = f"memtest_{uuid.uuid4().hex[:12]}"
    mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_URL}/{name}"
    finally:
        mysql_admin(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The behaviour suite's backend: a SQLite file, and a real MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    return request.getfixturevalue("mysql_dsn")


def db_ids(dsn: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` are event rows in the database at ``dsn`` (a store of its own)."""
    from memory import load_config
    from memory.store import create_store

    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    try:
        return store.existing_ids("events", ids)
    finally:
        store.dispose()


def service_config(dsn: str, root: Path, **queue: Any) -> dict[str, Any]:
    return {
        "database": {"dsn": dsn, "connect_timeout": 2, "read_timeout": 10, "write_timeout": 10},
        "vault": {"root_path": str(root / "vault"), "watch": False},
        "failure_queue": {"path": str(root / "queue"), "retry_base_delay_s": 0.05, "retry_max_delay_s": 0.5,
                          **queue},
        "logging": {"warn_interval_s": 0},
    }


@pytest.fixture
def make_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., MemoryService]]:
    """Build services on one folder; each is closed and reconciled (``check()``) at teardown.

    ``queue`` keywords go to ``failure_queue:``; ``sections`` adds (or replaces) whole config
    sections, e.g. ``sections={"graph": {"enabled": False}}``.
    """
    monkeypatch.delenv("MEMORY_DATABASE_DSN", raising=False)
    made: list[MemoryService] = []

    def make(dsn: str, root: Path | None = None, *, sections: dict[str, Any] | None = None,
             **queue: Any) -> MemoryService:
        cfg = service_config(dsn, root or tmp_path, **queue)
        cfg.update(sections or {})
        svc = MemoryService.from_config(cfg)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        if not svc._closed:
            svc.flush(10)
            problems = svc.check()
            svc.close()
            assert problems == [], problems


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount small real tmpfs file systems (for "no space left" and read-only faults).

    Needs the privilege to mount (root in the CI sandbox). Elsewhere the test is skipped with that
    reason, except under CI=true where it fails.
    """
    import subprocess

    mounted: list[Path] = []

    def make(size_kb: int) -> Path:
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            msg = f"cannot mount a tmpfs here ({res.stderr.strip()}); run the suite as root"
            if IN_CI:
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        mounted.append(mnt)
        return mnt

    yield make
    import subprocess as sp

    for mnt in reversed(mounted):
        sp.run(["umount", "-l", str(mnt)], capture_output=True)


def remount(mnt: Path, mode: str) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True, capture_output=True)


@pytest.fixture
def proxy(mysql_dsn: str) -> Iterator[tuple[Any, str]]:
    """A fault-injecting TCP proxy in front of a fresh MariaDB database, and the DSN through it."""
    from sqlalchemy.engine import make_url

    from .faultproxy import FaultProxy

    url = make_url(mysql_dsn)
    p = FaultProxy(url.host or "127.0.0.1", url.port or 3306)
    try:
        yield p, url.set(port=p.port).render_as_string(hide_password=False)
    finally:
        p.close()
