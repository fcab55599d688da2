"""recall.graph_boost: off, results are exactly those without a graph; on, the neighbours of the top
hits join with ``why.graph`` — only notes and events that pass the query's filters (SQLite, MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import Hit, MemoryService

from .conftest import service_config, wait_for


@pytest.fixture
def open_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("MEMORY_DATABASE_DSN", raising=False)
    made: list[MemoryService] = []

    def make(dsn: str, graph: dict[str, Any], boost: dict[str, Any]) -> MemoryService:
        cfg = service_config(dsn, tmp_path)
        # Keyword only and no recency: scores depend on the index alone, so runs compare exactly.
        cfg.update(graph=graph, recall={"embedder": "none", "recency_weight": 0, "graph_boost": boost})
        svc = MemoryService.from_config(cfg)
        svc.initialize()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


def settled(svc: MemoryService) -> None:
    assert svc.flush(30)
    assert wait_for(lambda: svc.health()["index"]["lag_records"] == 0)


def shape(hits: list[Hit]) -> list[tuple[str, str, float, dict[str, Any]]]:
    return [(h.kind, h.id, h.score, h.why.as_dict()) for h in hits]


def test_boost_off_is_exactly_recall_without_a_graph_and_on_adds_neighbours(open_service: Any, dsn: str) -> None:
    plain = open_service(dsn, {"enabled": False}, {"enabled": False})
    plain.upsert_knowledge("facts/zebra", "# Zebra\nZebra stripes are black and white. See [[savanna]].")
    plain.upsert_knowledge("facts/savanna", "# Savanna\nGrassland with scattered trees.")
    plain.upsert_knowledge("facts/okapi", "# Okapi\nA forest giraffe with a zebra pattern on its legs.")
    near = plain.append_event({"text": "saw a zebra at the zoo"}, "s1")
    other = plain.append_event({"text": "the lion pride rested"}, "s2")
    mine = plain.append_event({"text": "bought a ticket for the ferry"}, "s1")
    settled(plain)
    before = plain.recall("zebra", 10)
    before_s1 = plain.recall("zebra", 10, session_key="s1")
    assert {h.id for h in before} == {"facts/zebra", "facts/okapi", near.event_id}
    assert plain.store.edge_count() == 0
    plain.close()

    off = open_service(dsn, {}, {"enabled": False})
    off.vault.rebuild()  # the notes' links become edges now
    off.graph.add_edge("facts/zebra", other.event_id, "mentions")
    off.graph.add_edge(mine.event_id, near.event_id)
    settled(off)
    assert off.graph.related("facts/zebra") == sorted([("facts/savanna", 1), (other.event_id, 1)])
    assert shape(off.recall("zebra", 10)) == shape(before)
    assert shape(off.recall("zebra", 10, session_key="s1")) == shape(before_s1)
    assert all(h.why.graph == 0.0 for h in before)
    off.close()

    on = open_service(dsn, {}, {"enabled": True, "depth": 1, "score": 0.3, "top": 5})
    hits = {h.id: h for h in on.recall("zebra", 10)}
    zebra = hits["facts/zebra"]
    assert zebra.score == next(h.score for h in before if h.id == "facts/zebra")
    for joined in ("facts/savanna", other.event_id):
        assert hits[joined].why.graph == pytest.approx(0.3 * zebra.score)
        assert hits[joined].score == hits[joined].why.graph
        assert hits[joined].score < zebra.score
    assert hits[mine.event_id].why.graph > 0 and hits[mine.event_id].kind == "event"  # a neighbour of the zoo event
    assert hits["facts/savanna"].title == "Savanna" and "Grassland" in hits["facts/savanna"].text
    # The query's filters bind neighbours too: another session's event never comes in by the graph.
    scoped = {h.id for h in on.recall("zebra", 10, session_key="s1")}
    assert other.event_id not in scoped and {"facts/savanna", mine.event_id} <= scoped
    assert {h.id for h in on.recall("zebra", 10, kinds=["knowledge"])} == {"facts/zebra", "facts/okapi",
                                                                          "facts/savanna"}
    # Turns are hops, never results; depth 2 reaches through them.
    turn = on.append_turn("s1", near.event_id)
    answer = on.append_event({"text": "it was a grevy"}, "s1")
    on.finish_turn(turn.turn_id, answer.event_id)
    settled(on)
    ids = [h.id for h in on.recall("zebra", 20)]
    assert turn.turn_id not in ids and answer.event_id not in ids
    on.close()
    deep = open_service(dsn, {}, {"enabled": True, "depth": 2, "score": 0.3, "top": 5})
    got = {h.id: h for h in deep.recall("zebra", 20)}
    assert turn.turn_id not in got and got[answer.event_id].why.graph > 0
