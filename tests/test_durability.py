"""Acknowledged means durable: under every fsync policy, a SIGKILL right after the appends
returned loses none of them. (Power loss is bounded by the policy; a kill is not.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import service_config

CHILD = r"""
import json, os, sys
from memory import MemoryService
svc = MemoryService.from_config(json.loads(sys.argv[1]), start_writer=False)  # nothing reaches the DB
ids = [svc.append_event({"i": i, "text": "héllo"}, "s").event_id for i in range(2000)]
t = svc.append_turn("s", ids[0])
svc.finish_turn(t.turn_id, status="error", error="boom")
print(json.dumps({"events": ids, "turn": t.turn_id}), flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_sigkill_after_acknowledgement_loses_nothing(tmp_path: Path, policy: str) -> None:
    cfg = service_config(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, fsync=policy, max_dump_file_size_mb=0.05)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    acked = json.loads(out.stdout.splitlines()[-1])
    assert len(list((tmp_path / "queue" / "slot-0").glob("seg-*.log"))) > 1  # it rotated on the way
    svc = MemoryService.from_config(cfg, start_vault=False)
    try:
        assert svc.flush(60)
        assert svc.store.existing_ids("events", acked["events"]) == set(acked["events"])
        turn = svc.get_turn(acked["turn"])
        assert turn is not None and (turn.status, turn.error) == ("error", "boom")
        assert svc.health()["queue"]["recovered"] == 2002
        assert svc.check() == []
    finally:
        svc.close()
