"""End to end: two finishes of one turn wait on the writer's retry list because the turn's row is
not in the database yet (the process that started the turn cannot reach the database). Once the
turn lands, the retries apply in whatever order their backoff says; the newest finish must win.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from memory import MemoryService
from memory._records import FINISH

from .conftest import wait_for
from .faultproxy import FaultProxy

Make = Callable[..., MemoryService]


@contextlib.contextmanager
def offline_route(dsn: str, where: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """Another way to the same database that is down until ``bring_up()`` is called.

    MariaDB: a TCP proxy that refuses connections, then forwards. SQLite: the file reached through
    a folder that is a dangling symlink (a volume not mounted yet), then pointed at the real folder.
    """
    url = make_url(dsn)
    if url.get_backend_name() == "sqlite":
        real = Path(str(url.database))
        mnt = where / "mnt"
        os.symlink(where / "not-mounted", mnt)

        def mount() -> None:
            tmp = where / "mnt.new"
            os.symlink(real.parent, tmp)
            os.replace(tmp, mnt)

        yield f"sqlite:///{mnt / real.name}", mount
        return
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 3306)
    proxy.set_mode("refuse")
    try:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), lambda: proxy.set_mode("forward")
    finally:
        proxy.close()


def pending_finish(svc: MemoryService, turn_id: str, status: str) -> Any:
    for it in svc.queue.pending_items():
        if it.kind == FINISH and it.row[0] == turn_id and it.row[1] == status:
            return it
    return None


def test_newest_finish_wins_when_retries_land_out_of_order(make_service: Make, dsn: str, tmp_path: Path) -> None:
    # The finishing process retries "turn not found" quickly at first, then ever more slowly.
    fin_svc = make_service(dsn, root=tmp_path / "finisher", max_retries=1000, retry_base_delay_s=0.05,
                           retry_max_delay_s=10.0)
    fin_svc.initialize()
    set_up = 0
    for rnd in range(6):
        where = tmp_path / f"round{rnd}"
        where.mkdir()
        with offline_route(dsn, where) as (offline_dsn, bring_up):
            starter = make_service(offline_dsn, root=where, retry_base_delay_s=0.02, retry_max_delay_s=0.05)
            turn = starter.append_turn("chat", None)  # journaled; its row cannot reach the database yet
            fin_svc.finish_turn(turn.turn_id, status="error", error="older finish")
            # Let the older finish fail a few times: its next retry is now 0.4-0.8 s away...
            assert wait_for(lambda: getattr(pending_finish(fin_svc, turn.turn_id, "error"), "attempts", 0) >= 5)
            fin_svc.finish_turn(turn.turn_id, final_output_obs_id="out-2", status="ok")
            # ...while the newer one has failed once and retries within 0.05 s.
            assert wait_for(lambda: getattr(pending_finish(fin_svc, turn.turn_id, "ok"), "attempts", 0) >= 1)
            bring_up()
            assert wait_for(lambda: pending_finish(fin_svc, turn.turn_id, "ok") is None)
            # The newer finish is in. If the older one is still waiting, it lands after it: the case.
            if pending_finish(fin_svc, turn.turn_id, "error") is not None:
                set_up += 1
            assert starter.flush(30) and fin_svc.flush(30)
            row = fin_svc.store.get_turn(turn.turn_id)
            assert row is not None
            assert (row[5], row[6], row[7]) == ("ok", None, "out-2"), f"round {rnd}: an older finish overwrote a newer one"
            got = fin_svc.get_turn(turn.turn_id)
            assert got is not None and got.status == "ok" and got.final_output_obs_id == "out-2"
            assert fin_svc.health()["queue"]["dead_lettered"] == 0
            starter.close()
        if set_up >= 2:
            break
    assert set_up >= 1, "the older finish never retried after the newer one; the case was not exercised"


def test_requeued_dead_finish_never_overwrites_a_newer_one(make_service: Make, dsn: str, tmp_path: Path) -> None:
    """A finish dead-lettered because its turn never came ("turn not found") is requeued by the
    CLI after the turn arrived with a newer finish: the older one must not win."""
    svc = make_service(dsn, max_retries=1)
    svc.initialize()
    svc.finish_turn("turn-from-elsewhere", status="error", error="stale")
    assert wait_for(lambda: svc.health()["queue"]["dead_lettered"] == 1)
    svc.close()
    # The turn arrives from another process, already finished, later in time.
    newer = time.time() + 1
    assert svc.store.write_batch([], [("turn-from-elsewhere", "chat", None, None, None, "running", newer - 2)],
                                 [("turn-from-elsewhere", "ok", None, "out", newer)]) == []
    cfg = tmp_path / "m.yaml"
    cfg.write_text(json.dumps({"database": {"dsn": dsn}, "failure_queue": {"path": str(tmp_path / "queue")}}))
    out = subprocess.run([sys.executable, "-m", "memory.cli", "dead-letter", "requeue", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout) == {"requeued": 1, "remaining": 0}, out.stderr  # resolved: it lost, not missing
    row = svc.store.get_turn("turn-from-elsewhere")
    assert row is not None and (row[5], row[6], row[7], row[9]) == ("ok", None, "out", newer)
