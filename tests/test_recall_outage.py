"""Recall when things go wrong: hostile arguments, and the database unreachable.

Hostile input never raises (only an invalid ``kinds`` is a ``ValueError``, on the real and the
disabled service alike) and never knocks recall off the database onto its offline answer.

The outage is real: on SQLite the database's folder is renamed away and a plain file put in its
place (every connection attempt fails, as on a lost mount; permissions cannot do it, the suite
runs as root); on MariaDB the ``proxy`` fault proxy first refuses connections, then — once the
breaker is open — blackholes them, so a recall that still tried the database would hang for
seconds (PyMySQL waits for the server's greeting up to the read timeout).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import DisabledMemoryService, MemoryService

from .conftest import wait_for
from .test_recall_service import caught_up, check_shape, keys, knowledge_ids, sync, write_note

Make = Callable[..., MemoryService]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


HOSTILE_QUERIES: dict[str, Any] = {
    "empty": "", "whitespace": " \t\n\u3000 ", "punctuation": "?!…;:\"'()[]{}*+-@", "fts operators": 'NEAR(" OR * -',
    "nul": "\x00\x00", "lone surrogates": "\ud800\udfff\udbff", "none": None, "unprintable": Unprintable(),
    "number": 12345, "bytes": b"umbrella", "ten megabytes": "x" * 10_000_000,
}


@pytest.fixture
def small(dsn: str, make_service: Make) -> tuple[MemoryService, str]:
    svc = make_service(dsn)
    svc.initialize()
    write_note(svc, "home/umbrella-stand", "The umbrella stand is in the hallway", "Umbrella stand")
    sync(svc)
    e = svc.append_event({"text": "I lost my umbrella on the bus"}, "chat:bob")
    caught_up(svc)
    return svc, e.event_id


@pytest.mark.parametrize("name", list(HOSTILE_QUERIES))
def test_hostile_queries_never_raise(small: tuple[MemoryService, str], name: str) -> None:
    svc, _ = small
    query = HOSTILE_QUERIES[name]
    check_shape(svc.recall(query), 10)
    check_shape(svc.recall(query, 3, kinds=("event",), session_key="chat:bob", since="7d", until=time.time()), 3)
    assert svc.health()["index"]["offline_answers"] == 0  # it did not fall back to the offline answer


@pytest.mark.parametrize("query", ["umbrella\x00", "umbr\x00 umbrella", "umbrella \ud800", "\udfffumbrella",
                                   "umbrella " + "x" * 10_000_000, "UMBRELLA!!!", "«umbrella»"],
                         ids=["nul", "nul inside", "surrogate", "surrogate glued", "10 MB", "shouted", "quoted"])
def test_hostile_query_around_a_real_word_still_finds_it(small: tuple[MemoryService, str], query: str) -> None:
    svc, event_id = small
    got = set(keys(check_shape(svc.recall(query), 10)))
    assert got == {("knowledge", "home/umbrella-stand"), ("event", event_id)}, got
    assert svc.health()["index"]["offline_answers"] == 0


def test_hostile_k_and_time_bounds(small: tuple[MemoryService, str]) -> None:
    svc, _ = small
    everything = set(keys(svc.recall("umbrella")))
    assert len(everything) == 2
    assert set(keys(check_shape(svc.recall("umbrella", 10**12), 1000))) == everything
    assert set(keys(svc.recall("umbrella", 2**70))) == everything
    for k in (0, -1, -(10**12)):
        assert svc.recall("umbrella", k) == [], k
    for k in ("many", float("nan"), float("inf"), Unprintable(), [3]):
        check_shape(svc.recall("umbrella", k), 10)  # an unusable k means the default
    garbage: list[Any] = ["yesterday-ish", "", "7 fortnights", float("nan"), float("inf"), 10**400, True,
                          Unprintable(), [1], {"d": 7}, "\x00", "\ud800"]
    # A bound recall cannot read is ignored (answered as if absent), never an empty answer.
    ignored_wrongly = [(which, i) for i, bound in enumerate(garbage) for which in ("since", "until")
                       if set(keys(svc.recall("umbrella", **{which: bound}))) != everything]
    assert ignored_wrongly == [], [(which, type(garbage[i]).__name__, i) for which, i in ignored_wrongly]
    for session in (Unprintable(), 42, "", "\x00", "\ud800"):
        check_shape(svc.recall("umbrella", session_key=session), 10)


BAD_KINDS: list[Any] = ["notes", [], (), ["event", "x"], 5, ""]


@pytest.mark.parametrize("kinds", BAD_KINDS, ids=[repr(k) for k in BAD_KINDS])
def test_invalid_kinds_raise_value_error(small: tuple[MemoryService, str], kinds: Any) -> None:
    svc, _ = small
    with pytest.raises(ValueError, match="kinds"):
        svc.recall("umbrella", kinds=kinds)
    with pytest.raises(ValueError, match="kinds"):
        DisabledMemoryService().recall("umbrella", kinds=kinds)
    assert DisabledMemoryService().recall("umbrella", kinds=("event",)) == []


# -- the database unreachable -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Outage:
    dsn: str
    cut: Callable[[], None]  # connection attempts fail at once
    stall: Callable[[], None]  # connection attempts hang (where the backend can: MariaDB)
    restore: Callable[[], None]


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.integration)])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite":
        folder, away = tmp_path / "db", tmp_path / "db.away"
        folder.mkdir()

        def cut() -> None:  # a plain file where the folder was: the store cannot even recreate it
            os.rename(folder, away)
            folder.write_text("not a folder")

        def back() -> None:
            if away.exists():
                folder.unlink()
                os.rename(away, folder)

        yield Outage(f"sqlite:///{folder / 'memory.db'}", cut, lambda: None, back)
        back()  # after a failed test: let the teardown's flush reach the file
        return
    p, dsn = request.getfixturevalue("proxy")

    def restore() -> None:
        p.set_mode("forward")
        p.kill_all()  # connections hung in the blackhole fail now instead of at their read timeout

    yield Outage(dsn, lambda: p.set_mode("refuse"), lambda: p.set_mode("blackhole"), restore)
    restore()


def offline_keys(svc: MemoryService, query: str, **filters: Any) -> set[tuple[str, str]]:
    hits = check_shape(svc.recall(query, **filters), 10)
    assert all(h.why.vector_rank is None and h.why.vector == 0.0 for h in hits), hits  # keyword only
    return set(keys(hits))


def test_recall_during_an_outage_and_after_it(outage: Outage, make_service: Make) -> None:
    svc = make_service(outage.dsn)
    svc.initialize()
    write_note(svc, "facts/coffee", "Alice drinks a flat white with oat milk", "Coffee")
    sync(svc)
    old = ("event", svc.append_event({"text": "I lost my umbrella on the bus"}, "chat:bob").event_id)
    caught_up(svc)
    assert set(keys(svc.recall("umbrella"))) == {old}

    outage.cut()
    new = ("event", svc.append_event({"text": "the green umbrella is in the car"}, "chat:bob").event_id)
    other = ("event", svc.append_event({"text": "an umbrella for Alice"}, "chat:alice").event_id)
    assert wait_for(lambda: svc.queue.breaker.is_open, timeout=60)
    outage.stall()
    write_note(svc, "facts/tea", "Bob drinks jasmine tea after lunch", "Tea")  # a human edit, never synced

    connect_timeout = svc.config.database.connect_timeout
    started = time.monotonic()
    answers = [svc.recall("umbrella") for _ in range(20)]
    elapsed = time.monotonic() - started
    assert elapsed < connect_timeout / 4, f"20 recalls took {elapsed:.2f}s with the breaker open"
    assert all(set(keys(a)) == set(keys(answers[0])) for a in answers)

    # Events from the pending window, notes from the files; filters still apply.
    assert {new, other} <= offline_keys(svc, "umbrella")
    assert offline_keys(svc, "umbrella", session_key="chat:bob") & {new, other} == {new}
    assert offline_keys(svc, "oat milk", kinds=("knowledge",)) == {("knowledge", "facts/coffee")}
    assert offline_keys(svc, "jasmine") == {("knowledge", "facts/tea")}
    assert all(k[0] == "event" for k in offline_keys(svc, "oat milk umbrella", kinds=("event",)))
    hit = svc.recall("jasmine")[0]
    assert hit.title == "Tea" and "jasmine" in hit.text

    started = time.monotonic()
    h = svc.health()
    assert time.monotonic() - started < connect_timeout / 2
    assert h["status"] in ("degraded", "down") and h["database"]["reachable"] is False, h["status"]
    assert h["index"]["offline_answers"] >= 20 and h["index"]["enabled"] is True, h["index"]

    outage.restore()
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    sync(svc)  # the watcher is off in these tests: bring facts/tea into the database
    caught_up(svc)
    offline_before = svc.health()["index"]["offline_answers"]
    hits = check_shape(svc.recall("umbrella"))
    assert {old, new, other} <= set(keys(hits))
    assert all(h.why.vector_rank is not None for h in hits if keys([h])[0] in {old, new, other}), hits
    assert knowledge_ids(svc.recall("jasmine")) == ["facts/tea"]
    assert svc.health()["index"]["offline_answers"] == offline_before  # answered by the database again
    assert svc.health()["status"] == "ok"


def test_recall_when_the_database_was_never_reachable(outage: Outage, make_service: Make) -> None:
    outage.cut()
    svc = make_service(outage.dsn)
    note = write_note(svc, "facts/bike", "The bike lock code is in the drawer", "Bike")
    e = svc.append_event({"text": "where did I leave the bike pump"}, "chat:ann")
    assert wait_for(lambda: svc.queue.breaker.is_open, timeout=60)
    outage.stall()
    assert offline_keys(svc, "bike") == {("knowledge", "facts/bike"), ("event", e.event_id)}
    assert svc.recall("bike", kinds=("knowledge",))[0].title == "Bike"
    note.unlink()  # the files are the truth, even offline
    assert offline_keys(svc, "bike") == {("event", e.event_id)}
    assert svc.health()["status"] in ("degraded", "down")
    outage.restore()
    assert wait_for(lambda: svc.flush(1.0), timeout=120)
    caught_up(svc)
    assert keys(svc.recall("bike pump")) == [("event", e.event_id)]
