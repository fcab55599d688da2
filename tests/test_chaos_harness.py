"""The chaos harness itself: its plans cover what they claim, its judges can say "failed".

Fast tests of the pure parts of ``tools/chaos*.py`` (the planner, the verdict on each process's
end, the list of broken promises) and of the checker against a real SQLite database holding
records written by a real service. The chaos runs themselves are in ``test_chaos.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService

from .conftest import service_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from chaos import STALL_S, Proc, failures, judge  # noqa: E402
from chaos_check import parse_acks, stderr_problems, verify  # noqa: E402
from chaos_plan import (EXIT, FORK, KILL, MP_FORK, MP_SPAWN, PLAIN, Options, flap_schedule,  # noqa: E402
                        outage_cycles, plan_run)


# -- the planner ----------------------------------------------------------------------------------------
def test_a_seed_names_a_run() -> None:
    opts = Options(cycles=20, seed=12, forks=True)
    assert plan_run(opts) == plan_run(opts)
    assert plan_run(opts) != plan_run(Options(cycles=20, seed=13, forks=True))
    assert flap_schedule(3, mysql=True)[:50] == flap_schedule(3, mysql=True)[:50]


def test_a_ci_sized_fork_run_covers_every_scenario() -> None:
    """The 20-cycle CI run (seed 12) really contains what the chaos test claims to exercise."""
    plans = plan_run(Options(cycles=20, seed=12, forks=True))
    actors = [a for p in plans for a in p.actors]
    children = [c for a in actors for c in a.children]
    assert {a.kind for a in actors} == {PLAIN, FORK, MP_FORK, MP_SPAWN}
    assert {p.order for p in plans} >= {"parent-first", "children-first"}
    early = {a.early_from for a in actors if a.early is not None}
    assert early == {"spawn", "announce"}  # killed importing, and building the service (claim, adoption)
    assert {a.fate for a in actors} == {KILL, EXIT} and {c.fate for c in children} == {KILL, EXIT}
    for p in plans:
        for a in p.actors:
            if a.children and p.order == "parent-first":
                assert all(c.life > a.life for c in a.children)  # the parent dies first
            elif a.children:
                assert all(c.life < a.life for c in a.children)  # children die under a live parent
    spawned = [c for a in actors if a.kind == MP_SPAWN for c in a.children]
    assert any(c.life < 0.3 for c in spawned)  # a spawned child killed while building its service
    assert any(c.close for c in children) and any(not c.close for c in children)


@pytest.mark.parametrize("cycles", [5, 8, 20, 1000])
def test_long_outages_happen_and_end_before_the_run_does(cycles: int) -> None:
    down = outage_cycles(Options(cycles=cycles, seed=1))
    assert down and max(down) < cycles - 2
    runs = sorted(down)
    assert any(b == a + 1 for a, b in zip(runs, runs[1:]))  # at least one spans several cycles
    assert outage_cycles(Options(cycles=8, always_down=True)) == frozenset(range(8))


# -- the verdict on a process's end -----------------------------------------------------------------------
def proc(fate: str, status: int | None, killed: str = "", **kw: Any) -> Proc:
    return Proc("c0001-a0", PLAIN, fate, 0.5, None, "", True, Path("/nonexistent"), pid=42, status=status,
                killed=killed, **kw)


def test_judge_tells_we_killed_it_from_it_died_on_its_own() -> None:
    assert judge(proc(KILL, -9, "plan")) is None
    assert judge(proc(EXIT, 0)) is None
    assert "died on its own (status -7)" in (judge(proc(KILL, -7, "plan")) or "")  # SIGBUS before our kill
    assert "died on its own" in (judge(proc(KILL, -7)) or "")
    assert "died on its own" in (judge(proc(KILL, 0)) or "")  # should have run until killed
    assert "died on its own" in (judge(proc(EXIT, 1)) or "")  # an exception
    assert "died on its own" in (judge(proc(EXIT, -11)) or "")
    assert "hung" in (judge(proc(EXIT, -9, "hung")) or "")  # a deadlock never let it leave
    assert "stalled" in (judge(proc(KILL, -9, "plan", idle_at_kill=STALL_S + 1)) or "")
    assert "never finished starting" in (judge(proc(KILL, -9, "start-timeout")) or "")


CLEAN: dict[str, Any] = {
    "lost": 0, "finish_lost": 0, "duplicated": 0, "wrongly_dead": 0, "dead_without_reason": 0, "poison_in_db": 0,
    "dead_letter_malformed": 0, "id_clashes": [], "not_durable": {}, "unacked_rows": {"events": 2, "turns": 0},
    "processes": {"processes": 6, "children": 2}, "drained": True, "check_problems": [], "segments_left": [],
    "process_failures": [], "stderr": {"counts": {}},
    "disk": {"violations": [], "waste_max_mb": 0.2, "waste_bound_mb": 0.3},
}


@pytest.mark.parametrize("change", [
    {"lost": 3}, {"finish_lost": 1}, {"duplicated": 1}, {"wrongly_dead": 1}, {"dead_without_reason": 1},
    {"poison_in_db": 1}, {"id_clashes": ["x"]}, {"not_durable": {"disk_full": 5}},
    {"unacked_rows": {"events": 9, "turns": 0}}, {"unacked_rows": {"events": -1, "turns": 0}},
    {"drained": False}, {"check_problems": ["accounting"]}, {"segments_left": ["slot-0/seg-1.log"]},
    {"process_failures": ["cycle 3: c0003-a0 died on its own (status -7)\nFatal Python error: Bus error"]},
    {"stderr": {"counts": {"Traceback (most recent call last)": 1}}},
    {"disk": {"violations": [{"mb": 90}], "waste_max_mb": 0.2, "waste_bound_mb": 0.3}},
    {"disk": {"violations": [], "waste_max_mb": 40.0, "waste_bound_mb": 24.0}},
])
def test_every_broken_promise_fails_the_run(change: dict[str, Any]) -> None:
    assert failures(CLEAN) == []
    broken = failures({**CLEAN, **change})
    assert len(broken) == 1, broken


# -- the checker against a real database ----------------------------------------------------------------------
def test_ack_lines_torn_fragile_and_markers(tmp_path: Path) -> None:
    ack = tmp_path / "c0001-a0-77.log"
    eid, tid = "000660cf500e0c6da12a1b5185", "000660cf500e0c6ea12a1b5185"
    ack.write_text(f"# pid 77 c0001-a0\n# started\ne {eid} 1\nt {tid} 0\nf {tid} 0\n"
                   f"E {eid[:-1]}0 0 disk_full\ne {eid[:14]}")
    acks = parse_acks(ack)
    assert acks.events == {eid: True} and acks.turns == {tid} and acks.finishes == {tid}
    assert acks.fragile == [("e", eid[:-1] + "0", "disk_full")]
    assert acks.torn == [("e", eid[:14])]


def test_checker_finds_lost_wrongly_dead_and_unreasoned_records(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'c.db'}"
    with MemoryService.from_config(service_config(dsn, tmp_path)) as svc:
        kept = svc.append_event({"text": "fine"}, "s")
        turn = svc.append_turn("s", kept.event_id)
        svc.finish_turn(turn.turn_id, status="ok")
        unfinished = svc.append_turn("s", kept.event_id)
        assert svc.flush(30)
    never = "000660cf500e0c6da12a1b5185"  # acknowledged, in neither the database nor the dead letters
    acks = tmp_path / "acks" / "c0000"
    acks.mkdir(parents=True)
    (acks / "c0000-a0-1.log").write_text(
        f"e {kept.event_id} 0\ne {never} 0\nt {turn.turn_id} 0\nf {turn.turn_id} 0\n"
        f"t {unfinished.turn_id} 0\nf {unfinished.turn_id} 0\ne 00066000000001")  # a torn line
    dead = tmp_path / "queue" / "dead-letter.jsonl"
    dead.write_text(json.dumps({"kind": 1, "row": ["000660cf500e0c6da12a1b9999", 1.0, "s", '{"text":"fine"}'],
                                "reason": "rejected", "last_error": "x"}) + "\n"
                    + json.dumps({"kind": 1, "row": ["000660cf500e0c6da12a1b8888", 1.0, "s", '{"text":"poison"}'],
                                  "reason": "", "last_error": ""}) + "\n")
    r = verify(dsn, tmp_path / "acks", tmp_path / "queue")
    assert r["events"] == 2 and r["turns"] == 2 and r["finishes"] == 2 and r["torn_ack_lines"] == 1
    assert r["lost"] == 2, r  # the never-written event and the torn line's
    assert r["finish_lost"] == 1, r  # the finish acknowledged for a turn still "running"
    assert r["wrongly_dead"] == 1 and r["dead_without_reason"] == 1, r
    assert r["poison_in_db"] == 0 and r["duplicated"] == 0 and r["unacked_rows"] == {"events": 0, "turns": 0}, r


ORPHANED_SPAWN = """Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 122, in spawn_main
    exitcode = _main(fd, parent_sentinel)
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 130, in _main
    preparation_data = reduction.pickle.load(from_parent)
EOFError: Ran out of input
"""
OURS = """Traceback (most recent call last):
  File "/src/memory/queue/_writer.py", line 10, in submit
    raise EOFError("Ran out of input")
EOFError: Ran out of input
"""


def test_a_spawn_child_orphaned_at_start_is_not_a_failure_but_our_tracebacks_are(tmp_path: Path) -> None:
    # Regression: the chaos kills parents on purpose; a spawn child whose parent died before
    # handing it its work prints Python's own start-up traceback, which failed the chaos run.
    (tmp_path / "a.err").write_text("a warning line\n" + ORPHANED_SPAWN)
    (tmp_path / "b.err").write_text(ORPHANED_SPAWN + "more\n" + OURS)
    found = stderr_problems(sorted(tmp_path.glob("*.err")))
    assert found["orphaned_spawns"] == 2
    assert found["counts"] == {"Traceback (most recent call last)": 1}
    assert "memory/queue/_writer.py" in found["samples"][0]
