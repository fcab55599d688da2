"""service.graph: edges through the journal (durable, replayed, upserted, capped, dead-lettered),
automatic turn edges, read-your-writes, enabled: false, config errors — on SQLite and MariaDB."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memory import ConfigError, DisabledMemoryService, Edge, GraphConfig, MemoryService, load_config
from memory.queue._admin import dead_letters, describe

from .conftest import service_config, wait_for
from .faultproxy import FaultProxy

Make = Callable[..., MemoryService]


def triples(edges: list[Edge]) -> list[tuple[str, str, str, float]]:
    return [(e.src, e.dst, e.type, e.weight) for e in edges]


def test_add_edge_reads_its_writes_and_survives_a_restart(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    e = svc.graph.add_edge("a", "b", "cites", 0.5)
    assert (e.src, e.dst, e.type, e.weight) == ("a", "b", "cites", 0.5) and e.created_at == e.updated_at > 0
    svc.graph.add_edge("a", "c")
    # Visible at once, written or not.
    assert triples(svc.graph.edges("a")) == [("a", "c", "related_to", 1.0), ("a", "b", "cites", 0.5)]
    assert svc.flush(10)
    svc.close()
    again = make_service(dsn)
    assert triples(again.graph.edges("a")) == [("a", "c", "related_to", 1.0), ("a", "b", "cites", 0.5)]
    assert triples(again.graph.edges("b", "in")) == [("a", "b", "cites", 0.5)]
    assert again.graph.related("b", depth=2) == [("a", 1), ("c", 2)]
    assert again.graph.count() == 2


def test_re_adding_updates_the_weight_never_duplicates(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    for w in (0.1, 0.7, 0.4):
        svc.graph.add_edge("x", "y", "likes", w)
    assert triples(svc.graph.edges("x")) == [("x", "y", "likes", 0.4)]  # pending: the latest wins
    assert svc.flush(10)
    assert triples(svc.graph.edges("x")) == [("x", "y", "likes", 0.4)]
    svc.graph.add_edge("x", "y", "likes", 0.9)
    assert svc.flush(10)
    assert triples(svc.graph.edges("x")) == [("x", "y", "likes", 0.9)] and svc.graph.count() == 1


def test_the_cap_evicts_the_lowest_weight_then_the_oldest(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn, sections={"graph": {"max_edges_per_item": 3}})
    svc.graph.add_edge("hub", "old-low", weight=0.2)
    assert svc.flush(10)
    svc.graph.add_edge("hub", "new-low", weight=0.2)
    svc.graph.add_edge("hub", "high", weight=5.0)
    assert svc.flush(10)
    svc.graph.add_edge("hub", "mid", weight=1.0)  # a fourth edge: the oldest of the two lowest goes
    assert svc.flush(10)
    assert [e.dst for e in svc.graph.edges("hub")] == ["high", "mid", "new-low"]
    svc.graph.add_edge("hub", "tiny", weight=0.01)  # the lowest is the new edge itself
    assert svc.flush(10)
    assert [e.dst for e in svc.graph.edges("hub")] == ["high", "mid", "new-low"]


def test_remove_item_removes_both_directions_in_journal_order(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    svc.graph.add_edge("n", "m")
    svc.graph.add_edge("k", "n")
    svc.graph.add_edge("k", "j")
    assert svc.flush(10)
    svc.graph.remove_item("n")
    assert svc.graph.edges("n", "both") == []  # pending removal already applies
    svc.graph.add_edge("n", "later")  # after the removal: kept
    assert svc.flush(10)
    assert triples(svc.graph.edges("n", "both")) == [("n", "later", "related_to", 1.0)]
    assert [e.dst for e in svc.graph.edges("k")] == ["j"]


def test_turns_link_to_their_input_and_their_winning_output(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    question = svc.append_event({"text": "q"}, "s")
    turn = svc.append_turn("s", question.event_id)
    first = svc.append_event({"text": "a1"}, "s")
    svc.finish_turn(turn.turn_id, first.event_id)
    assert svc.flush(10)
    assert {(e.dst, e.type) for e in svc.graph.edges(turn.turn_id)} == {(question.event_id, "input"),
                                                                        (first.event_id, "output")}
    # A later finish with another output moves the output edge; an older one arriving late does not.
    second = svc.append_event({"text": "a2"}, "s")
    svc.finish_turn(turn.turn_id, second.event_id)
    assert svc.flush(10)
    svc.queue.submit(3, (turn.turn_id, "ok", None, "stale-output", 1.0))  # finished_at in 1970: loses
    assert svc.flush(10)
    assert {(e.dst, e.type) for e in svc.graph.edges(turn.turn_id)} == {(question.event_id, "input"),
                                                                        (second.event_id, "output")}
    assert svc.graph.related(question.event_id, depth=2) == sorted([(turn.turn_id, 1), (second.event_id, 2)])
    no_input = svc.append_turn("s", None)
    svc.finish_turn(no_input.turn_id, None, status="error", error="boom")
    assert svc.flush(10)
    assert svc.graph.edges(no_input.turn_id, "both") == []


def test_bad_edges_are_coerced_or_dead_lettered_never_raised(make_service: Make, dsn: str, tmp_path: Path) -> None:
    svc = make_service(dsn, max_retries=1)
    long_id = "L" * 300
    assert svc.graph.add_edge(long_id, "ok").src != long_id  # coerced: a prefix and a hash
    assert math.isnan(svc.graph.add_edge("a", "b", weight=float("nan")).weight)
    assert svc.graph.add_edge("a", "c", weight=float("inf")).weight == 1.7976931348623157e308
    svc.graph.add_edge("a", "d", weight="abc")
    svc.graph.add_edge("", "e")
    svc.graph.add_edge("a", "f", type="t" * 100)
    svc.graph.add_edge("good", "edge")
    assert svc.flush(20)
    assert triples(svc.graph.edges("good")) == [("good", "edge", "related_to", 1.0)]
    assert [e.dst for e in svc.graph.edges("a")] == ["c", "f"]
    assert len(svc.graph.edges("a")[1].type) == 32
    assert len(svc.graph.edges(svc.graph.add_edge(long_id, "x").src, "out")) >= 1
    dead = dead_letters(tmp_path / "queue")
    assert sorted(d["row"][2] for d in dead) == ["b", "d", "e"] and {d["kind"] for d in dead} == {4}
    assert all(describe(d).startswith("edge ") for d in dead)
    assert "finite number" in describe(next(d for d in dead if d["row"][2] == "b"))


def test_invalid_read_arguments_raise_value_error(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    with pytest.raises(ValueError, match="direction"):
        svc.graph.edges("a", "sideways")
    with pytest.raises(ValueError, match="types"):
        svc.graph.edges("a", types="cites")
    with pytest.raises(ValueError, match="depth"):
        svc.graph.related("a", depth=0)


def test_disabled_graph_writes_nothing_and_answers_empty(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn, sections={"graph": {"enabled": False}})
    accepted = svc.queue.stats()["accepted"]
    assert svc.graph.add_edge("a", "b").dst == "b"
    svc.graph.remove_item("a")
    assert svc.queue.stats()["accepted"] == accepted  # nothing journaled
    ev = svc.append_event({"text": "q"}, "s")
    turn = svc.append_turn("s", ev.event_id)
    svc.finish_turn(turn.turn_id, ev.event_id)
    svc.upsert_knowledge("facts/a", "see [[b]]")
    assert svc.flush(10)
    assert svc.store.edge_count() == 0
    assert svc.graph.edges(turn.turn_id, "both") == [] and svc.graph.related("facts/a") == []
    assert svc.graph.count() == 0
    assert svc.health()["graph"] == {"enabled": False}
    off = DisabledMemoryService()
    assert off.graph.add_edge("a", "b", weight=2).weight == 2.0 and off.graph.edges("a") == [] and off.graph.count() == 0


def test_health_reports_the_graph(make_service: Make, dsn: str) -> None:
    svc = make_service(dsn)
    svc.graph.add_edge("a", "b")
    assert svc.flush(10)
    g = svc.health()["graph"]
    assert g["enabled"] is True and g["edges"] == 1 and g["errors"] == 0 and g["max_edges_per_item"] == 20


KILLED_CHILD = r"""
import json, os, sys
from memory import MemoryService
svc = MemoryService.from_config(json.loads(sys.argv[1]), start_writer=False)  # nothing reaches the DB
for i in range(50):
    svc.graph.add_edge("src", f"dst-{i:02d}", "cites", i / 10)
svc.graph.remove_item("dst-00")
print("added", flush=True)
os.kill(os.getpid(), 9)
"""


def test_edges_added_before_a_kill_9_arrive_with_the_next_service(make_service: Make, dsn: str, tmp_path: Path) -> None:
    cfg = service_config(dsn, tmp_path)
    cfg["graph"] = {"max_edges_per_item": 100}
    out = subprocess.run([sys.executable, "-c", KILLED_CHILD, json.dumps(cfg)], capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "MEMORY_DATABASE_DSN"})
    assert out.returncode == -signal.SIGKILL and "added" in out.stdout, out.stderr
    svc = make_service(dsn, sections={"graph": {"max_edges_per_item": 100}})
    assert svc.flush(30)
    got = svc.graph.edges("src")
    assert len(got) == 49 and got[0].dst == "dst-49" and got[0].weight == 4.9
    assert "dst-00" not in {e.dst for e in got}


@pytest.mark.integration
def test_edges_added_during_an_outage_arrive_after_it(make_service: Make, proxy: tuple[FaultProxy, str]) -> None:
    p, dsn = proxy
    svc = make_service(dsn)
    svc.graph.add_edge("warm", "up")
    assert svc.flush(10)
    p.set_mode("refuse")
    for i in range(20):
        svc.graph.add_edge("during", f"outage-{i}", weight=float(i))
    assert wait_for(lambda: svc.queue.breaker.failures >= 1)
    assert len(svc.graph.edges("during")) == 20  # from the pending window
    assert svc.graph.related("warm") == [] and svc.graph.count() == 0  # the database is away: empty, no raise
    p.set_mode("forward")
    assert wait_for(lambda: svc.flush(1.0), timeout=90)
    assert svc.store.edges("during")[0][1] == "outage-19" and len(svc.store.edges("during")) == 20


def test_config_errors_name_the_key_and_what_was_expected(tmp_path: Path) -> None:
    for section, text in (("graph.enabled", "graph:\n  enabled: maybe\n"),
                          ("graph.max_edges_per_item", "graph:\n  max_edges_per_item: 0\n"),
                          ("graph.turn_edges", "graph:\n  turn_edges: 3\n"),
                          ("recall.graph_boost.depth", "recall:\n  graph_boost:\n    depth: 9\n"),
                          ("recall.graph_boost.score", "recall:\n  graph_boost:\n    score: -1\n"),
                          ("recall.graph_boost", "recall:\n  graph_boost: [1]\n"),
                          ("graph", "graph: 5\n")):
        path = tmp_path / "memory.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(path) in str(info.value) and f"{section}:" in str(info.value) and "expected" in str(info.value)
    path.write_text("graph:\n  max_edges_per_item: '7'\n  link_edges: off\n")
    assert load_config(path).graph == GraphConfig(max_edges_per_item=7, link_edges=False)
    assert load_config({}).graph == GraphConfig()
