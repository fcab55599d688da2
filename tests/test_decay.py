"""Decay on a real SQLite file and a real MariaDB: zones move by an injected clock, exactly.

Adoption gives committed items their zones; idle items move one zone out per run and the next
move needs another full period; zone-4 items idle long enough are forgotten (event row gone,
tombstone, edges gone, recall outbox queued); pinned notes and md/ configs never move; touches
promote and are replay-safe; a tombstone blocks resurrection; dry runs change nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from memory import load_config
from memory.decay import Decay, DecayConfig, DecayReport
from memory.store import create_store
from memory.store._decay import DecaySql
from memory.store._graph import GraphSql

DAY = 86400.0
T0 = 1_700_000_000.0


def decay_store(dsn: str) -> Any:
    """The configured store, at head (``SqlStore`` carries the decay and graph methods)."""
    store = create_store(load_config({"database": {"dsn": dsn}}).database)
    assert isinstance(store, DecaySql) and isinstance(store, GraphSql)
    store.initialize()
    return store


@pytest.fixture
def store(dsn: str) -> Iterator[Any]:
    s = decay_store(dsn)
    try:
        yield s
    finally:
        s.dispose()


def add_events(store: Any, *ids: str, ts: float = T0) -> None:
    store.write_batch([(i, ts, "s1", json.dumps({"text": f"obs of {i}"}), None, None) for i in ids], [], [])


def note_row(key: str, meta: dict[str, Any] | None = None, path: str | None = None,
             updated: float = T0) -> tuple[Any, ...]:
    body = f"body of {key}"
    return (key, key.split("/")[0], path or f"knowledge/{key}.md", key, body, "[]", "[]", "[]",
            json.dumps(meta) if meta else None, hashlib.sha256(body.encode()).hexdigest(), 1, updated)


def zone(store: Any, item_id: str, kind: str = "event") -> int | None:
    st = store.item_state(kind, item_id)
    return None if st is None else st.zone


def make(store: Any, **kw: Any) -> Decay:
    return Decay(store, DecayConfig(**{"enabled": True, **kw}))


def outbox(store: Any) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in store._fetch("SELECT kind, item_id FROM recall_outbox", ())}


# -- zones by the clock ------------------------------------------------------------------------------

def test_items_move_one_zone_per_run_and_each_move_needs_a_full_period(store: Any) -> None:
    add_events(store, "e1", "e2")
    d = make(store, initial_zones={"event": 2, "knowledge": 1})
    r = d.run(now=T0 + DAY)
    assert r.adopted == 2 and r.demoted == () and zone(store, "e1") == 2
    # Idle since the event's own time (T0): 30 days later it moves out once, not twice.
    r = d.run(now=T0 + 30 * DAY)
    assert sorted(r.demoted) == [("e1", 2, 3), ("e2", 2, 3)] and zone(store, "e1") == 3
    assert store.item_state("event", "e1").zone_since == T0 + 30 * DAY
    # The next move counts from entering zone 3: 29.9 days later nothing, 30 days later one zone.
    assert d.run(now=T0 + 59.9 * DAY).demoted == ()
    r = d.run(now=T0 + 60 * DAY)
    assert sorted(r.demoted) == [("e1", 3, 4), ("e2", 3, 4)] and r.forgotten == ()
    # Zone 4 is the end of demotion; forgetting counts auto_forget_days from entering it.
    assert d.run(now=T0 + 60 * DAY + 179 * DAY).forgotten == ()
    assert zone(store, "e1") == 4


def test_a_recall_resets_idleness_and_promotes(store: Any) -> None:
    add_events(store, "e1", "e2")
    d = make(store)
    d.run(now=T0)
    assert zone(store, "e1") == 3
    with store._raw_write() as cur:
        assert d.apply_touches(cur, [("event", "e1", T0 + 20 * DAY), ("event", "e1", T0 + 21 * DAY)]) == 1
    st = store.item_state("event", "e1")
    assert (st.zone, st.recall_count, st.last_recalled_at, st.idle_since) == (2, 2, T0 + 21 * DAY, T0 + 21 * DAY)
    # A replayed batch (the journal after a crash) changes nothing.
    with store._raw_write() as cur:
        d.apply_touches(cur, [("event", "e1", T0 + 20 * DAY), ("event", "e1", T0 + 21 * DAY)])
    assert store.item_state("event", "e1") == st
    r = d.run(now=T0 + 31 * DAY)
    assert r.demoted == (("e2", 3, 4),)  # e1 was recalled 10 days ago
    assert d.run(now=T0 + 51 * DAY).demoted == (("e1", 2, 3),)


def test_touches_of_unknown_tombstoned_or_malformed_items_are_skipped(store: Any) -> None:
    add_events(store, "e1", "e2")
    d = make(store)
    assert d.forget("e2").ok
    bad: list[Any] = [("event", "nope", T0), ("event", "e2", T0), ("planet", "e1", T0), ("event",), None,
                      ("event", "e1", "soon")]
    with store._raw_write() as cur:
        assert d.apply_touches(cur, bad + [("event", "e1", T0)]) == 1
    # Not adopted yet: the touch gives it a row one zone inside its kind's initial zone.
    assert zone(store, "e1") == 2 and store.item_state("event", "nope") is None
    assert store.item_state("event", "e2") is None


def test_zones_below_the_minimum_never_move(store: Any) -> None:
    add_events(store, "e0", "e1")
    store.upsert_notes("knowledge", [note_row("facts/core", {"zone": "core"}), note_row("facts/plain")])
    d = make(store)
    d.run(now=T0)
    assert zone(store, "facts/core", "knowledge") == 0 and zone(store, "facts/plain", "knowledge") == 1
    for k in range(1, 20):
        d.run(now=T0 + k * 100 * DAY)
    assert zone(store, "facts/core", "knowledge") == 0 and zone(store, "facts/plain", "knowledge") == 1
    assert store.existing_ids("events", ["e0", "e1"]) == set()  # events went 3 -> 4 -> forgotten


def test_pinned_notes_are_never_demoted_nor_forgotten_and_count_as_protected(store: Any) -> None:
    store.upsert_notes("knowledge", [note_row("facts/pin", {"zone": 3, "pinned": True}),
                                     note_row("facts/free", {"zone": 3})])
    d = make(store)
    d.run(now=T0)
    r = d.run(now=T0 + 31 * DAY)
    assert r.demoted == (("facts/free", 3, 4),) and r.protected == 1
    r = d.run(now=T0 + 300 * DAY)
    assert r.forgotten == ("facts/free",) and r.protected == 1
    assert zone(store, "facts/pin", "knowledge") == 3
    res = d.forget("facts/pin")
    assert not res.ok and "pinned" in res.message
    assert store.get_note("knowledge", "facts/pin") is not None


def test_md_configs_are_never_forgotten_and_never_get_a_zone(store: Any) -> None:
    store.upsert_notes("configs", [("system", "md/system.md", "System", "be kind", None, "d" * 64, 1, T0)])
    # A knowledge row whose path is not under knowledge/ (hand-edited) is protected like a pin.
    store.upsert_notes("knowledge", [note_row("odd/one", {"zone": 4}, path="md/odd/one.md")])
    d = make(store)
    d.run(now=T0)
    assert store.item_state("knowledge", "system") is None
    res = d.forget("system")
    assert not res.ok and "md/" in res.message
    assert not d.forget("odd/one").ok
    d.run(now=T0 + 1000 * DAY)
    assert store.get_note("knowledge", "odd/one") is not None and store.get_note("configs", "system") is not None


def test_front_matter_zone_applies_when_it_changes(store: Any) -> None:
    store.upsert_notes("knowledge", [note_row("facts/a", {"zone": 2})])
    d = make(store)
    d.run(now=T0)
    d.run(now=T0 + 31 * DAY)
    assert zone(store, "facts/a", "knowledge") == 3
    # An edit that keeps the declared zone does not undo decay; a new declaration does.
    store.upsert_notes("knowledge", [note_row("facts/a", {"zone": 2}, updated=T0 + 40 * DAY)])
    d.run(now=T0 + 41 * DAY)
    assert zone(store, "facts/a", "knowledge") == 3
    store.upsert_notes("knowledge", [note_row("facts/a", {"zone": "inner"}, updated=T0 + 50 * DAY)])
    d.run(now=T0 + 51 * DAY)
    st = store.item_state("knowledge", "facts/a")
    assert (st.zone, st.zone_since, st.declared_zone) == (1, T0 + 51 * DAY, 1)
    # Pinning later protects from then on.
    store.upsert_notes("knowledge", [note_row("facts/a", {"zone": "inner", "pinned": "yes"}, updated=T0 + 60 * DAY)])
    d.run(now=T0 + 61 * DAY)
    assert store.item_state("knowledge", "facts/a").pinned


# -- forgetting ------------------------------------------------------------------------------------

def test_auto_forget_deletes_the_event_keeps_a_tombstone_drops_edges_and_queues_recall(store: Any) -> None:
    add_events(store, "e1", "e2")
    store.add_edges([("e1", "e2", "related_to", 1.0, T0), ("k/x", "e1", "mentions", 1.0, T0),
                     ("e2", "k/x", "mentions", 1.0, T0)], None)
    d = make(store, initial_zones={"event": 4, "knowledge": 1})
    d.run(now=T0)
    with store._raw_write() as cur:  # the indexer cleared the outbox
        cur.execute("DELETE FROM recall_outbox")
    with store._raw_write() as cur:
        d.apply_touches(cur, [("event", "e2", T0 + 100 * DAY)])
    r = d.run(now=T0 + 181 * DAY)
    # e2 was recalled (promoted to 3) 81 days ago: it drifts back out instead of being forgotten.
    assert r.forgotten == ("e1",) and r.demoted == (("e2", 3, 4),)
    assert store.get_event("e1") is None and store.get_event("e2") is not None
    assert store.edges("e1", "both") == [] and [e[:3] for e in store.edges("e2", "both")] == [("e2", "k/x", "mentions")]
    assert outbox(store) == {("event", "e1")}
    assert store.queued_removals(10) == [("event", "e1")]  # recall hides it before the indexer runs
    (tomb,) = store.tombstones_of("e1")
    assert (tomb.kind, tomb.reason, tomb.forgotten_at, tomb.zone) == ("event", "auto-forget: idle in zone 4",
                                                                       T0 + 181 * DAY, 4)
    assert tomb.digest == hashlib.sha256(json.dumps({"text": "obs of e1"}).encode()).hexdigest()
    assert store.item_state("event", "e1") is None


def test_tombstone_blocks_resurrection_until_restored(store: Any) -> None:
    add_events(store, "e1", "e2")
    d = make(store)
    assert d.forget("e1", "asked to").ok
    # The writer's replay of e1 (a journal, an import): dropped inside its own transaction.
    with store._raw_write() as cur:
        dropped = store.drop_tombstoned(cur, "event", ["e1", "e2", "e3"])
        assert dropped == {"e1"}
    assert d.forget("e1").message.startswith("already forgotten")
    res = d.restore("e1")
    assert res.ok and res.kind == "event"
    assert store.get_event("e1") == ("e1", T0, "s1", json.dumps({"text": "obs of e1"}), None, None)
    assert ("event", "e1") in outbox(store) and store.tombstones_of("e1") == []
    assert zone(store, "e1") == 3
    with store._raw_write() as cur:
        assert store.drop_tombstoned(cur, "event", ["e1"]) == set()
    assert not d.restore("e1").ok and not d.restore("").ok and not d.forget("missing").ok


def test_dry_run_changes_nothing_and_reports_what_a_run_would_do(store: Any) -> None:
    add_events(store, "a1", "a2", "a3")
    d = make(store, initial_zones={"event": 4, "knowledge": 1})
    d.run(now=T0)
    add_events(store, "b1", ts=T0 + 100 * DAY)
    before = store._fetch("SELECT * FROM item_state ORDER BY item_id", ())
    dry = d.run(now=T0 + 200 * DAY, dry_run=True)
    assert dry.dry_run and dry.forgotten == ("a1", "a2", "a3") and dry.adopted == 1
    assert store._fetch("SELECT * FROM item_state ORDER BY item_id", ()) == before
    assert store.count("events") == 4 and store.tombstone_count() == 0
    real = d.run(now=T0 + 200 * DAY)
    assert (real.forgotten, real.demoted, real.adopted, real.scanned) == (dry.forgotten, dry.demoted, 1, 4)


def test_report_contents_and_batches(store: Any) -> None:
    add_events(store, *[f"e{i:03d}" for i in range(25)])
    store.upsert_notes("knowledge", [note_row("facts/pin", {"zone": 2, "pinned": True})])
    d = make(store, batch_size=4, initial_zones={"event": 2, "knowledge": 1})
    r = d.run(now=T0 + 31 * DAY)
    assert isinstance(r, DecayReport)
    # The note is adopted now (notes carry no creation time), so it is not idle yet: 0 protected.
    assert (r.adopted, r.scanned, r.protected, len(r.demoted)) == (26, 26, 0, 25)
    assert set(r.demoted) == {(f"e{i:03d}", 2, 3) for i in range(25)}
    assert r.zones == {0: 0, 1: 0, 2: 1, 3: 25, 4: 0}
    d_ = r.as_dict()
    assert d_["zone_changes"] == {"2->3": 25} and d_["zones"]["middle"] == 1 and d_["demoted"][0][1:] == [2, 3]
    assert r.summary()["demoted"] == 25 and r.aborted is None
    r = d.run(now=T0 + 62 * DAY)
    assert (r.adopted, r.protected, len(r.demoted)) == (0, 1, 25)


def test_audit_gets_one_zone_line_per_run(store: Any) -> None:
    add_events(store, *[f"e{i}" for i in range(5)])
    lines: list[tuple[str, dict[str, Any]]] = []
    d = Decay(store, DecayConfig(enabled=True, initial_zones={"event": 3, "knowledge": 1}),
              audit=lambda event, **f: lines.append((event, f)))
    d.run(now=T0 + 31 * DAY)
    d.forget("e0", "test")
    d.restore("e0")
    events = [e for e, _ in lines]
    assert events == ["zone_change", "decay_run", "forget", "restore"]
    assert lines[0][1]["count"] == 5 and lines[0][1]["changes"] == {"3->4": 5}
    assert lines[1][1]["demoted"] == 5 and lines[2][1]["reason"] == "test"


def test_health_reports_zones_usage_and_problems(store: Any) -> None:
    add_events(store, *[f"e{i}" for i in range(9)])
    clock = [T0]
    d = Decay(store, DecayConfig(enabled=True, capacity={3: 10, 0: 5}), clock=lambda: clock[0])
    section, problems = d.health()
    assert section["last_run_at"] is None and section["zones"] is None and problems == ()
    report = d.run_leased("me")
    assert report is not None and report.adopted == 9
    section, problems = d.health()
    assert section["last_run_at"] == T0 and section["next_run_at"] == T0 + 3600
    assert section["zones"]["outer"] == 9 and section["usage"]["outer"]["percent"] == 90.0
    assert section["usage"]["outer"]["warning"] and not section["usage"]["core"]["warning"]
    assert "middle" not in section["usage"] and section["last_result"]["adopted"] == 9
    assert problems == ("zone 3 (outer) holds 9 items, 90% of its capacity of 10",)
    # Days without a run (no scheduler anywhere): said in plain words.
    clock[0] = T0 + 5 * 3600
    assert any("last decay run was 5.0 h ago" in p for p in d.health()[1])


def test_disabled_decay_answers_empty_without_a_query(store: Any) -> None:
    add_events(store, "e1")
    d = Decay(store, DecayConfig(enabled=False))
    assert d.run(now=T0).aborted and d.health() == ({"enabled": False}, ())
    with store._raw_write() as cur:
        assert d.apply_touches(cur, [("event", "e1", T0)]) == 0
    d.start()
    assert d.scheduler is None
    assert store.item_state("event", "e1") is None


def test_a_replayed_touch_batch_counts_only_the_touches_not_yet_applied(store: Any) -> None:
    # Regression: touches were summed per item and applied if the newest was new, so a batch
    # replayed after a crash (one touch already applied, one new) counted the old one again.
    from memory.store import DecayWrites

    store.decay_writes = DecayWrites(enabled=True, initial_zones={"event": 3, "knowledge": 1})
    add_events(store, "e1")
    store.write_batch([], [], [], touches=[("r1", "event", "e1", T0 + 100)])
    store.write_batch([], [], [], touches=[("r1", "event", "e1", T0 + 100), ("r2", "event", "e1", T0 + 200)])
    st = store.item_state("event", "e1")
    assert st.recall_count == 2 and st.last_recalled_at == T0 + 200, st
    store.write_batch([], [], [], touches=[("r2", "event", "e1", T0 + 200)])  # replayed again: nothing
    assert store.item_state("event", "e1").recall_count == 2


def test_a_tombstone_holds_on_the_write_path_with_decay_disabled(store: Any) -> None:
    # Regression: the write path dropped tombstoned events only with decay on, but forget works
    # with decay off (and the CLI's store never had decay on): a replay brought the event back.
    add_events(store, "e1")
    res = Decay(store, DecayConfig(enabled=False)).forget("e1", "asked to")
    assert res.ok and store.get_event("e1") is None
    add_events(store, "e1")  # the journal replays it
    assert store.get_event("e1") is None and store.tombstones_of("e1")


def test_a_note_found_pinned_by_the_forget_scan_keeps_its_state_row(store: Any) -> None:
    # Regression: the forget scan pinned such a note's row and then deleted it in the same step
    # (as if its source were gone), losing its zone and recall count.
    store.upsert_notes("knowledge", [note_row("facts/late", {"zone": 4})])
    d = make(store)
    d.run(now=T0)
    with store.transaction() as cur:
        d.apply_touches(cur, [("knowledge", "facts/late", T0 + DAY)])  # zone 4 -> 3, one recall
    with store.transaction() as cur:  # back in zone 4, idle: a forget candidate
        cur.execute("UPDATE item_state SET zone = 4, idle_since = 0 WHERE item_id = 'facts/late'")
    # Pinned in the vault; the same updated_at, so the refresh does not read it again before the scan.
    store.upsert_notes("knowledge", [note_row("facts/late", {"zone": 4, "pinned": True})])
    report = d.run(now=T0 + 200 * DAY)
    assert report.forgotten == ()
    st = store.item_state("knowledge", "facts/late")
    assert st is not None and st.pinned and st.recall_count == 1 and st.zone == 4
