"""Helpers shared by the benchmarks: timing, percentiles, fresh databases, the result table."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MYSQL_URL = os.environ.get("MEMORY_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def us(ns: float) -> str:
    return f"{ns / 1000:.1f} µs"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def mysql_admin(sql: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_URL)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username or "root", password=u.password or "",
                           autocommit=True)
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def mysql_available() -> bool:
    try:
        mysql_admin("SELECT 1")
        return True
    except Exception:  # noqa: BLE001
        return False


@contextmanager
def fresh_dsn(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{Path(d) / 'bench.db'}"
        return
    name = f"membench_{uuid.uuid4().hex[:10]}"
    mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_URL}/{name}"
    finally:
        mysql_admin(f"DROP DATABASE IF EXISTS {name}")


def service_cfg(dsn: str, root: Path, **queue: Any) -> dict[str, Any]:
    return {"database": {"dsn": dsn}, "vault": {"root_path": str(root / "vault"), "watch": False},
            "failure_queue": {"path": str(root / "queue"), **queue}, "logging": {"warn_interval_s": 60}}


def sample_obs(i: int) -> dict[str, Any]:
    return {"type": "message", "text": f"hello number {i}, how are you today?", "user": "u-42",
            "metadata": {"channel": "chat", "lang": "en", "seq": i}}


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])
