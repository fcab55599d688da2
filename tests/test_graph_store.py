"""The graph's storage (``memory.store._graph.GraphSql``) on a real SQLite file and a real MariaDB.

Upserts update instead of duplicating and are order-independent; the per-item cap evicts the
lowest weight, the oldest on a tie; walks are one recursive statement, cycle-safe, nearest first,
checked against a Python BFS on random graphs; removal and renaming cover both directions; ids
that are hostile to SQL, to ``%``-formatting and to column types round-trip.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import event

from memory import StoreRejected, load_config
from memory.store import create_store
from memory.store._graph import GraphSql, edge_problem


def graph_store(dsn: str) -> Any:
    """The configured store with the graph methods, whether or not ``SqlStore`` inherits them yet."""
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    if not isinstance(store, GraphSql):
        store.__class__ = type(f"Graph{type(store).__name__}", (type(store), GraphSql), {})
    store.initialize()
    return store


@pytest.fixture
def store(dsn: str) -> Iterator[Any]:
    s = graph_store(dsn)
    try:
        yield s
    finally:
        s.dispose()


def keys(rows: Sequence[Sequence[Any]]) -> list[tuple[str, str, str]]:
    return [(r[0], r[1], r[2]) for r in rows]


def out_of(store: Any, src: str) -> dict[str, float]:
    return {r[1]: r[3] for r in store.edges(src)}


# -- upserts -----------------------------------------------------------------------------------------

def test_readding_an_edge_updates_it_instead_of_duplicating(store: Any) -> None:
    store.add_edges([("a", "b", "related_to", 1.0, 10.0)], 20)
    store.add_edges([("a", "b", "related_to", 2.0, 20.0)], 20)
    assert store.edges("a") == [("a", "b", "related_to", 2.0, 10.0, 20.0)]
    # A replay of the older assertion (a journal after a crash) changes nothing: the latest wins,
    # created_at stays the earliest, updated_at the latest.
    store.add_edges([("a", "b", "related_to", 1.0, 10.0)], 20)
    assert store.edges("a") == [("a", "b", "related_to", 2.0, 10.0, 20.0)]
    # Within one batch, repeats of an edge at the same time: the later row wins.
    store.add_edges([("a", "b", "related_to", 3.0, 30.0), ("a", "b", "related_to", 4.0, 30.0)], 20)
    assert store.edges("a") == [("a", "b", "related_to", 4.0, 10.0, 30.0)]
    # An older time in the batch than stored: created_at moves back, weight and updated_at stay.
    store.add_edges([("a", "b", "related_to", 9.0, 5.0)], 20)
    assert store.edges("a") == [("a", "b", "related_to", 4.0, 5.0, 30.0)]
    # Another type is another edge; without a time, ``now`` is used.
    store.add_edges([("a", "b", "links_to", 0.5)], 20, now=40.0)
    assert store.edges("a") == [("a", "b", "related_to", 4.0, 5.0, 30.0), ("a", "b", "links_to", 0.5, 40.0, 40.0)]
    assert store.edge_count() == 2


def test_upsert_runs_inside_the_callers_transaction(store: Any) -> None:
    """The writer calls ``upsert_edges`` within its batch: events and edges commit or roll back together."""
    with pytest.raises(RuntimeError):
        with store._raw_write() as cur:
            cur.executemany(store.insert_event_sql, [("e1", 1.0, "s", "{}", None, None)])
            store.upsert_edges(cur, [("e1", "k", "input", 1.0)], 20)
            raise RuntimeError("the batch fails after the edges were written")
    assert store.edge_count() == 0 and store.get_event("e1") is None
    with store._errors(), store._raw_write() as cur:
        cur.executemany(store.insert_event_sql, [("e1", 1.0, "s", "{}", None, None)])
        assert store.upsert_edges(cur, [("e1", "k", "input", 1.0)], 20) == 0
    assert keys(store.edges("e1")) == [("e1", "k", "input")] and store.get_event("e1") is not None


@pytest.mark.parametrize("bad", [
    ("x" * 256, "b", "t", 1.0), ("a", "y" * 256, "t", 1.0), ("a", "b", "t" * 33, 1.0), ("", "b", "t", 1.0),
    ("a", "b", "t", float("nan")), ("a", "b", "t", float("inf")), ("a", "b", "t", "1.0"), ("a", None, "t", 1.0),
    ("a", "b", "t", 1.0, float("nan")), ("a", "b", "t"),
])
def test_unacceptable_rows_are_rejected_alike_on_every_backend_and_nothing_is_written(store: Any,
                                                                                    bad: tuple[Any, ...]) -> None:
    assert edge_problem(bad) is not None
    with pytest.raises(StoreRejected):
        store.add_edges([("ok", "fine", "t", 1.0), bad], 20)
    assert store.edge_count() == 0


def test_arguments_are_checked(store: Any) -> None:
    for cap in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_edges_per_item"):
            store.add_edges([("a", "b", "t", 1.0)], cap)
    with pytest.raises(ValueError, match="depth"):
        store.related("a", 0)
    with pytest.raises(ValueError, match="limit"):
        store.related("a", 1, limit=0)
    with pytest.raises(ValueError, match="direction"):
        store.related("a", 1, direction="sideways")
    with pytest.raises(ValueError, match="direction"):
        store.edges("a", "sideways")
    with pytest.raises(ValueError, match="types"):
        store.edges("a", types="related_to")
    assert store.edge_count() == 0


# -- the per-item cap ------------------------------------------------------------------------------------

def test_the_cap_evicts_the_lowest_weight_and_the_oldest_on_a_tie(store: Any) -> None:
    evicted = store.add_edges([("a", "x1", "t", 0.5, 1.0), ("a", "x2", "t", 0.2, 5.0), ("a", "x3", "t", 0.2, 3.0),
                               ("a", "x4", "t", 0.9, 2.0)], 3)
    assert evicted == 1 and out_of(store, "a") == {"x1": 0.5, "x2": 0.2, "x4": 0.9}  # x3: as light, older
    # The new edge itself goes when it is the lightest.
    assert store.add_edges([("a", "x5", "t", 0.1, 9.0)], 3) == 1
    assert out_of(store, "a") == {"x1": 0.5, "x2": 0.2, "x4": 0.9}
    assert store.add_edges([("a", "x6", "t", 0.3, 9.0)], 3) == 1
    assert out_of(store, "a") == {"x1": 0.5, "x6": 0.3, "x4": 0.9}
    # Re-adding an edge with a higher weight saves it from the next eviction (x6 was the lightest).
    assert store.add_edges([("a", "x6", "t", 0.95, 10.0), ("a", "x7", "t", 0.4, 10.0)], 3) == 1
    assert out_of(store, "a") == {"x6": 0.95, "x4": 0.9, "x1": 0.5}
    # Same weight and same age: the smallest (dst, type) goes first, deterministically.
    store.add_edges([("b", "m", "t", 1.0, 1.0), ("b", "k", "t", 1.0, 1.0), ("b", "k", "s", 1.0, 1.0)], 2)
    assert keys(store.edges("b")) == [("b", "k", "t"), ("b", "m", "t")]


def test_the_cap_touches_only_the_sources_written_and_never_incoming_edges(store: Any) -> None:
    store.add_edges([("b", f"y{i}", "t", 0.1 * i, 1.0) for i in range(5)], None)  # no cap: all kept
    store.add_edges([(f"s{i}", "hub", "t", 1.0, 1.0) for i in range(10)], 3)
    assert len(store.edges("hub", "in")) == 10  # incoming edges are not capped
    store.add_edges([("a", f"x{i}", "t", 1.0, 1.0) for i in range(5)], 3)
    assert len(store.edges("a")) == 3 and len(store.edges("b")) == 5  # b was not written: left alone
    assert store.add_edges([("b", "y9", "t", 0.05, 2.0)], 3) == 3  # now b is: down to 3, lightest first
    assert out_of(store, "b") == pytest.approx({"y2": 0.2, "y3": 0.3, "y4": 0.4})


def test_the_cap_over_many_sources_in_one_batch(store: Any) -> None:
    """More sources than one DELETE takes (500): every one is capped, each keeps its heaviest."""
    rows = [(f"src-{i:04d}", f"dst-{j}", "t", float(j), 1.0) for i in range(1203) for j in range(4)]
    random.Random(3).shuffle(rows)
    assert store.add_edges(rows, 2) == 1203 * 2
    assert store.edge_count() == 1203 * 2
    for i in (0, 499, 500, 1000, 1202):
        assert out_of(store, f"src-{i:04d}") == {"dst-3": 3.0, "dst-2": 2.0}


# -- reads ------------------------------------------------------------------------------------------------

def small_graph(store: Any) -> None:
    store.add_edges([("a", "b", "related_to", 1.0), ("b", "c", "related_to", 1.0), ("c", "a", "links_to", 1.0),
                     ("c", "d", "related_to", 0.5), ("d", "e", "input", 1.0), ("a", "a", "related_to", 2.0),
                     ("e", "e", "output", 1.0)], 20)


def test_edges_by_direction_and_type(store: Any) -> None:
    small_graph(store)
    assert keys(store.edges("a")) == [("a", "a", "related_to"), ("a", "b", "related_to")]  # heaviest first
    assert keys(store.edges("a", "in")) == [("a", "a", "related_to"), ("c", "a", "links_to")]
    assert keys(store.edges("a", "both")) == [("a", "a", "related_to"), ("a", "b", "related_to"),
                                              ("c", "a", "links_to")]  # the self-loop once
    assert keys(store.edges("a", "both", types=["links_to"])) == [("c", "a", "links_to")]
    assert keys(store.edges("c", "both", types=["related_to", "input"])) == [("b", "c", "related_to"),
                                                                             ("c", "d", "related_to")]
    assert store.edges("a", "both", types=[]) == [] and store.edges("nobody", "both") == []


def test_related_at_depth_1_2_3_with_cycles_and_self_loops(store: Any) -> None:
    small_graph(store)
    assert store.related("a", 1) == [("b", 1), ("c", 1)]  # both directions; never the start itself
    assert store.related("a", 2) == [("b", 1), ("c", 1), ("d", 2)]  # c also at 2 via b: shortest kept
    assert store.related("a", 3) == [("b", 1), ("c", 1), ("d", 2), ("e", 3)]
    assert store.related("a", 50) == [("b", 1), ("c", 1), ("d", 2), ("e", 3)]  # cycles end at the depth
    assert store.related("a", 1, direction="out") == [("b", 1)]
    assert store.related("a", 2, direction="out") == [("b", 1), ("c", 2)]
    assert store.related("a", 3, direction="out") == [("b", 1), ("c", 2), ("d", 3)]
    assert store.related("a", 2, direction="in") == [("c", 1), ("b", 2)]
    assert store.related("e", 2) == [("d", 1), ("c", 2)]  # e's self-loop adds nothing
    assert store.related("a", 3, types=["related_to"]) == [("b", 1), ("c", 2), ("d", 3)]
    assert store.related("a", 3, types=["links_to", "input"]) == [("c", 1)]
    assert store.related("a", 3, types=[]) == [] and store.related("nobody", 3) == []
    assert store.related("a", 3, limit=2) == [("b", 1), ("c", 1)]


def test_related_ties_are_ordered_by_id(store: Any) -> None:
    store.add_edges([("s", "zeta", "t", 1.0), ("s", "alpha", "t", 0.1), ("mu", "s", "t", 1.0),
                     ("alpha", "beta", "t", 1.0), ("zeta", "Beta", "t", 1.0)], 20)
    assert store.related("s", 2) == [("alpha", 1), ("mu", 1), ("zeta", 1), ("Beta", 2), ("beta", 2)]


def reference_walk(edges: Sequence[tuple[str, str, str]], start: str, depth: int, direction: str,
                   types: Sequence[str] | None) -> list[tuple[str, int]]:
    adj: dict[str, set[str]] = defaultdict(set)
    for s, d, t in edges:
        if types is None or t in types:
            if direction in ("out", "both"):
                adj[s].add(d)
            if direction in ("in", "both"):
                adj[d].add(s)
    dist = {start: 0}
    frontier = [start]
    for k in range(1, depth + 1):
        nxt = []
        for n in frontier:
            for m in adj[n]:
                if m not in dist:
                    dist[m] = k
                    nxt.append(m)
        frontier = nxt
    del dist[start]
    return sorted(dist.items(), key=lambda x: (x[1], x[0]))


def test_related_matches_a_bfs_on_random_graphs_with_cycles(store: Any) -> None:
    rng = random.Random(5)
    nodes = [f"n{i:02d}" for i in range(40)]
    types = ["related_to", "links_to", "input"]
    edges = {(rng.choice(nodes), rng.choice(nodes), rng.choice(types)) for _ in range(110)}
    edges |= {(n, n, "related_to") for n in nodes[:5]}  # self-loops
    store.add_edges([(s, d, t, rng.random()) for s, d, t in edges], None)
    checked = 0
    for start in nodes[:25]:
        for depth in (1, 2, 3, 4):
            for direction in ("both", "out", "in"):
                for only in (None, ["related_to"], ["links_to", "input"]):
                    want = reference_walk(sorted(edges), start, depth, direction, only)
                    assert store.related(start, depth, types=only, limit=1000, direction=direction) == want
                    checked += bool(want)
    assert checked > 500


def test_related_is_one_statement(store: Any) -> None:
    small_graph(store)
    store.related("a", 1)  # the pool's first connection is set up outside the measured call
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        got = store.related("a", 3, types=["related_to", "links_to", "input"])
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert got == [("b", 1), ("c", 1), ("d", 2), ("e", 3)]
    queries = [s for s in statements if s.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert len(queries) == 1 and queries[0].startswith("WITH RECURSIVE"), statements


# -- removal and renaming -----------------------------------------------------------------------------------

def test_remove_item_removes_both_directions(store: Any) -> None:
    store.add_edges([("a", "b", "t", 1.0), ("c", "a", "t", 1.0), ("a", "a", "t", 1.0), ("b", "c", "t", 1.0),
                     ("a", "c", "u", 1.0)], 20)
    assert store.remove_item("a") == 4
    assert store.edges("a", "both") == [] and keys(store.edges("b", "both")) == [("b", "c", "t")]
    assert store.edge_count() == 1 and store.related("b", 3) == [("c", 1)]
    assert store.remove_item("a") == 0


def test_rename_moves_both_directions_and_merges_keeping_the_higher_weight(store: Any) -> None:
    store.add_edges([("x", "y", "t", 0.5, 1.0), ("z", "x", "t", 0.9, 2.0), ("x", "x", "t", 0.3, 3.0),
                     ("x", "n", "u", 0.7, 4.0), ("n", "x", "u", 0.6, 4.5), ("q", "r", "t", 1.0, 1.0)], None)
    store.add_edges([("n", "y", "t", 0.8, 5.0), ("z", "n", "t", 0.2, 6.0)], None)
    assert store.rename_item("x", "n") == 5
    assert store.edges("x", "both") == []
    assert sorted(store.edges("n", "both")) == sorted([
        ("n", "y", "t", 0.8, 1.0, 5.0),  # merged with x->y: the higher weight, earliest, latest
        ("z", "n", "t", 0.9, 2.0, 6.0),  # merged with z->x
        ("n", "n", "t", 0.3, 3.0, 3.0),  # the self-loop follows
        ("n", "n", "u", 0.7, 4.0, 4.5),  # x->n and n->x both became n->n: merged
    ])
    assert store.edges("q") == [("q", "r", "t", 1.0, 1.0, 1.0)]  # others untouched
    assert store.edge_count() == 5
    assert store.rename_item("n", "n") == 0 and store.edge_count() == 5
    assert store.rename_item("absent", "n") == 0 and store.edge_count() == 5


def test_rename_can_cap_the_new_item(store: Any) -> None:
    store.add_edges([("old", f"d{i}", "t", float(i), 1.0) for i in range(3)], None)
    store.add_edges([("new", f"e{i}", "t", 10.0 + i, 1.0) for i in range(3)], None)
    assert store.rename_item("old", "new", max_edges_per_item=4) == 3
    assert out_of(store, "new") == {"e0": 10.0, "e1": 11.0, "e2": 12.0, "d2": 2.0}


# -- hostile ids ---------------------------------------------------------------------------------------------

HOSTILE = [
    "it's", 'say "hi"', "100%", "%s", "%(x)s", "a%%b", "back\\slash", "'; DROP TABLE graph_edges; --",
    "knowledge/facts/naïve café", "知识/事实", "메모", "emoji 🧠🔗", "e\u0301", "tab\there", "new\nline",
    "x" * 255, "é" * 255, "🧠" * 255,
]


def test_hostile_ids_round_trip(store: Any) -> None:
    hostile_type = "t'%\"s\\;--" + "🔗" * 23  # 32 characters
    assert len(hostile_type) == 32
    # A star from a short id to every hostile one, and a chain through them.
    rows = [("hub", h, hostile_type, 1.0) for h in HOSTILE]
    rows += [(a, b, "related_to", 0.5) for a, b in zip(HOSTILE, HOSTILE[1:])]
    store.add_edges(rows, 40)
    assert store.edge_count() == len(HOSTILE) * 2 - 1
    # The walk reaches 255-character ids from a 3-character start (its column type is not the start's).
    assert sorted(store.related("hub", 1)) == sorted((h, 1) for h in HOSTILE)
    assert sorted(store.related("hub", 1, types=[hostile_type])) == sorted((h, 1) for h in HOSTILE)
    for h in HOSTILE:
        assert ("hub", h, hostile_type) in keys(store.edges(h, "in"))
        got = dict(store.related(h, 2))
        assert got["hub"] == 1 and h not in got
    renamed = "renamed " + "🔗" * 247
    assert len(renamed) == 255
    assert store.rename_item("%s", renamed) == 3
    assert store.edges("%s", "both") == []
    assert sorted(keys(store.edges(renamed, "both"))) == sorted([("hub", renamed, hostile_type),
                                                                ("100%", renamed, "related_to"),
                                                                (renamed, "%(x)s", "related_to")])
    assert store.remove_item("🧠" * 255) == 2
    assert store.remove_item(renamed) == 3
    assert store.edge_count() == len(HOSTILE) * 2 - 1 - 5
    with pytest.raises(StoreRejected):
        store.rename_item("hub", "x" * 256)
    with pytest.raises(StoreRejected):
        store.add_edges([("hub", "é" * 256, "t", 1.0)], 40)


# -- concurrent writers --------------------------------------------------------------------------------------

@pytest.mark.integration
def test_the_cap_holds_when_two_mariadb_transactions_add_to_one_source(mysql_dsn: str) -> None:
    """READ COMMITTED: the second transaction's count waits for the first and includes its edge.

    With a plain (consistent) read, each would count the committed edges plus its own, stay at
    the cap, evict nothing, and the source would end one edge over it.
    """
    import threading

    from sqlalchemy.engine import make_url

    from .conftest import wait_for

    first, second = graph_store(mysql_dsn), graph_store(mysql_dsn)
    database = make_url(mysql_dsn).database
    try:
        first.add_edges([("a", "e1", "t", 0.1, 1.0), ("a", "e2", "t", 0.2, 1.0)], 3)
        result: list[Any] = []
        with first._raw_write() as cur:  # the first transaction: a third edge, not committed yet
            assert first.upsert_edges(cur, [("a", "e3", "t", 0.3, 2.0)], 3) == 0
            worker = threading.Thread(target=lambda: result.append(second.add_edges([("a", "e4", "t", 0.4, 3.0)], 3)))
            worker.start()

            def second_waits_or_ended() -> bool:
                rows = first.execute(
                    "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN information_schema.processlist p "
                    "ON p.id = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.db = %s", (database,))
                return int(rows[0][0]) == 1 or not worker.is_alive()

            assert wait_for(second_waits_or_ended, 30)
        worker.join(30)
        assert not worker.is_alive()
        assert out_of(first, "a") == {"e2": 0.2, "e3": 0.3, "e4": 0.4} and result == [1]
    finally:
        first.dispose()
        second.dispose()
