"""A forgotten id stays forgotten on every write path until it is restored — on SQLite and MariaDB.

Events were already dropped by the writer; these are the other two ways back: a forgotten note's
file seen again by the vault sync (the move to the trash failed, or the file was put back by hand),
and edges naming a forgotten item (edge records, a turn's input and output, a note's links). A new
note written at a forgotten note's key is a note like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import MemoryService
from memory.queue._admin import dead_letters
from memory.store._graph import Forgotten, forgotten_notes, forgotten_of

from .conftest import service_config, wait_for

TEA = "# Tea\nGreen tea is best at eighty degrees.\n"
Make = Callable[[], MemoryService]


@pytest.fixture
def make(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """Services with decay on, on one folder; flushed, checked and closed at teardown."""
    monkeypatch.delenv("MEMORY_DATABASE_DSN", raising=False)
    made: list[MemoryService] = []

    def build() -> MemoryService:
        cfg = service_config(dsn, tmp_path)
        cfg["decay"] = {"enabled": True}
        svc = MemoryService.from_config(cfg)
        svc.initialize()
        made.append(svc)
        return svc

    yield build
    for svc in made:
        if not svc._closed:
            assert svc.flush(10)
            problems = svc.check()
            svc.close()
            assert problems == [], problems
    assert dead_letters(tmp_path / "queue") == []


def ends(svc: MemoryService, item_id: str, direction: str = "both") -> set[tuple[str, str, str]]:
    return {(e.src, e.dst, e.type) for e in svc.graph.edges(item_id, direction)}


def recalled(svc: MemoryService, query: str) -> set[str]:
    return {h.id for h in svc.recall(query)}


# -- notes ------------------------------------------------------------------------------------------------
def test_a_forgotten_note_whose_file_stayed_is_not_synced_back(make: Make, tmp_path: Path) -> None:
    svc = make()
    root = tmp_path / "vault"
    svc.upsert_knowledge("facts/tea", TEA)
    svc.upsert_knowledge("facts/milk", "# Milk\nGoes with [[tea]].")
    assert ends(svc, "facts/milk", "out") == {("facts/milk", "facts/tea", "links_to")}
    (root / ".trash").write_text("a file where the trash folder should be")  # the move will fail
    res = svc.forget("facts/tea")
    assert res.ok and "stays in place" in res.message, res
    tea = root / "knowledge" / "facts" / "tea.md"
    assert tea.exists() and svc.store.get_note("knowledge", "facts/tea") is None
    assert svc.store.pending_trash(10)[0].item_id == "facts/tea"
    # The next syncs see the file (a reconcile hashes every file, an edit of the linking note
    # re-sends its links): the forgotten note stays out, and so do the edges to it.
    (root / "knowledge" / "facts" / "milk.md").write_text("# Milk\nStill goes with [[tea]].\n")
    for _ in range(2):
        report = svc.vault_sync()
        assert report.invalid == () and report.database_ok
        assert svc.store.get_note("knowledge", "facts/tea") is None
        assert ends(svc, "facts/tea") == set() and svc.graph.related("facts/milk") == []
    svc.graph.add_edge("some-event", "facts/tea", "mentions")
    assert svc.flush(30)
    assert ends(svc, "facts/tea") == set()
    assert wait_for(lambda: "facts/milk" in recalled(svc, "milk goes with tea"), 30)
    assert "facts/tea" not in recalled(svc, "green tea eighty degrees")
    # Quiet: not a problem, not "not in the database"; named once, in plain words.
    vault = svc.health()["vault"]
    assert vault["not_in_database"] == [] and vault["problems"] == {}
    assert list(vault["forgotten"]) == ["knowledge/facts/tea.md"] and "restore" in vault["forgotten"][
        "knowledge/facts/tea.md"]
    check = svc.vault_check()
    assert check["missing_rows"] == [] and check["forgotten"] == ["knowledge/facts/tea.md"] and check["ok"], check
    # A human writes a new note at that key: it is a note like any other, links and edges included.
    tea.write_text("# Tea\nBlack tea, strong, with milk.\n")
    svc.vault_sync()
    row = svc.store.get_note("knowledge", "facts/tea")
    assert row is not None and "Black tea" in row["content"]
    (root / "knowledge" / "facts" / "milk.md").write_text("# Milk\nGoes with [[tea]] again.\n")
    svc.vault_sync()
    assert ends(svc, "facts/milk", "out") == {("facts/milk", "facts/tea", "links_to")}
    svc.graph.add_edge("some-event", "facts/tea", "mentions")
    assert svc.flush(30)
    assert ("some-event", "facts/tea", "mentions") in ends(svc, "facts/tea")
    assert svc.health()["vault"]["forgotten"] == {}
    assert len(svc.store.tombstones_of("facts/tea")) == 1  # the old note is still forgotten
    # Restoring the old note would overwrite the new one, or drop the old content for good:
    # refused, with the way out, and both stay as they are.
    res = svc.restore("facts/tea")
    assert not res.ok and "a new note now lives at knowledge/facts/tea.md" in res.message, res
    assert len(svc.store.tombstones_of("facts/tea")) == 1
    assert "Black tea" in svc.store.get_note("knowledge", "facts/tea")["content"]


def test_a_forgotten_note_put_back_by_hand_stays_out_and_restore_keeps_working(make: Make, tmp_path: Path) -> None:
    svc = make()
    root = tmp_path / "vault"
    svc.upsert_knowledge("facts/tea", TEA)
    tea = root / "knowledge" / "facts" / "tea.md"
    content = tea.read_bytes()
    res = svc.forget("facts/tea")
    assert res.ok and res.trash_path and not tea.exists(), res
    svc.vault_sync()
    tea.write_bytes(content)  # copied back from the trash by hand, not restored
    report = svc.vault_sync()
    assert report.new == 1 and report.invalid == ()
    assert svc.store.get_note("knowledge", "facts/tea") is None
    assert list(svc.health()["vault"]["forgotten"]) == ["knowledge/facts/tea.md"]
    # Restore is the way back (its place is taken by the copy, so it is refused until that goes).
    assert not svc.restore("facts/tea").ok
    tea.unlink()
    svc.vault_sync()
    assert svc.health()["vault"]["forgotten"] == {}
    assert svc.restore("facts/tea").ok and tea.read_bytes() == content
    svc.vault_sync()
    assert svc.store.get_note("knowledge", "facts/tea") is not None


def test_a_new_service_starting_over_a_forgotten_file_keeps_it_out(make: Make, tmp_path: Path) -> None:
    svc = make()
    svc.upsert_knowledge("facts/tea", TEA)
    (tmp_path / "vault" / ".trash").write_text("in the way")
    assert svc.forget("facts/tea").ok
    svc.close()
    again = make()  # its start-up sync reconciles against the database, which lacks the note
    assert wait_for(lambda: again.vault.last_sync is not None, 30)
    assert again.store.get_note("knowledge", "facts/tea") is None
    assert list(again.health()["vault"]["forgotten"]) == ["knowledge/facts/tea.md"]


# -- edges ------------------------------------------------------------------------------------------------
def test_edges_naming_a_forgotten_item_are_left_out_and_settled(make: Make) -> None:
    svc = make()
    q = svc.append_event({"text": "the question"}, "s")
    a = svc.append_event({"text": "the answer"}, "s")
    kept = svc.append_event({"text": "another event"}, "s")
    out = svc.append_event({"text": "an output"}, "s")
    earlier = svc.append_turn("s", kept.event_id)
    svc.finish_turn(earlier.turn_id, out.event_id)
    assert svc.flush(30)
    assert ends(svc, earlier.turn_id, "out") == {(earlier.turn_id, kept.event_id, "input"),
                                                 (earlier.turn_id, out.event_id, "output")}
    for ev in (q, a, out):
        assert svc.forget(ev.event_id).ok
    # The forgotten ids come back in a turn (a replayed journal, an import), in edge records, and
    # as the stored output of a turn whose late, losing finish re-derives its output edge.
    turn = svc.append_turn("s", q.event_id)
    svc.finish_turn(turn.turn_id, a.event_id)
    svc.queue.submit(3, (earlier.turn_id, "ok", None, "stale-output", 1.0))  # finished in 1970: loses
    svc.graph.add_edge("x", q.event_id, "cites")
    svc.graph.add_edge(a.event_id, "y")
    svc.graph.add_edge("x", kept.event_id)
    assert svc.flush(30)
    assert svc.get_turn(turn.turn_id) is not None  # the turn itself is written
    assert ends(svc, turn.turn_id) == set()
    assert ends(svc, earlier.turn_id) == {(earlier.turn_id, kept.event_id, "input")}
    assert ends(svc, "x") == {("x", kept.event_id, "related_to")}
    for ev in (q, a, out):
        assert ends(svc, ev.event_id) == set() and svc.graph.related(ev.event_id) == []
    assert svc.graph.related("x", depth=3) == sorted([(kept.event_id, 1), (earlier.turn_id, 2)])
    assert svc.check() == [] and svc.queue.stats()["pending"] == 0  # settled, not retried
    # Restored, an item takes edges again.
    assert svc.restore(q.event_id).ok
    svc.graph.add_edge("x", q.event_id, "cites")
    assert svc.flush(30)
    assert ("x", q.event_id, "cites") in ends(svc, "x")


# -- the decisions (pure) ----------------------------------------------------------------------------------
def test_a_note_stays_out_only_with_the_forgotten_content() -> None:
    rows = {"a": "d1", "b": "d2", "c": "d3"}
    assert forgotten_notes(rows, {"a": "d1", "b": "other", "z": "d3"}) == {"a"}
    assert forgotten_notes(rows, {}) == set()


def test_a_note_key_taken_again_is_not_forgotten_an_event_always_is() -> None:
    tombs = {("knowledge", "a"), ("knowledge", "b"), ("event", "e")}
    assert forgotten_of(tombs, live_notes={"b", "e"}) == {("knowledge", "a"), ("event", "e")}


def test_forgotten_asks_each_id_once() -> None:
    asked: list[list[str]] = []

    def find(ids: list[str]) -> set[tuple[str, str]]:
        asked.append(ids)
        return {("event", i) for i in ids if i.startswith("gone")}

    f = Forgotten(find)
    f.ask(["a", "gone-1", "a", None])
    f.ask(["a", "gone-1", "gone-2", ""])
    assert asked == [["a", "gone-1"], ["gone-2"]]
    rows: list[tuple[Any, ...]] = [("a", "b"), ("a", "gone-2"), ("gone-1", "b")]
    assert f.keep(rows) == [("a", "b")] and "gone-1" in f and "a" not in f and not f.empty
    assert Forgotten().keep(rows) == rows  # no tombstones (a schema before them): nothing is forgotten
