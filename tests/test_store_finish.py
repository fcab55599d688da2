"""Finishes in the database: the latest ``finished_at`` wins whatever order they are applied in,
re-applying is a no-op, a finish that lost is not "missing", and a batch is a few statements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from memory import load_config
from memory.store import SqlStore, create_store
from memory.store._sql import finish_chunks, latest_finishes


def turn(turn_id: str) -> tuple[Any, ...]:
    return (turn_id, "s", None, None, None, "running", 1.0)


def fin(turn_id: str, status: str, at: float, error: str | None = None, out: str | None = None) -> tuple[Any, ...]:
    return (turn_id, status, error, out, at)


@pytest.fixture
def store(dsn: str) -> Iterator[SqlStore]:
    s = create_store(load_config({"database": {"dsn": dsn}}).database)
    s.initialize()
    try:
        yield s
    finally:
        s.dispose()


def outcome(store: SqlStore, turn_id: str) -> tuple[Any, ...]:
    row = store.get_turn(turn_id)
    assert row is not None
    return row[5], row[6], row[7], row[9]  # status, error, final_output_obs_id, finished_at


def test_an_older_finish_applied_later_does_not_overwrite(store: SqlStore) -> None:
    store.write_batch([], [turn("t1")], [])
    assert store.write_batch([], [], [fin("t1", "ok", 20.0, out="new")]) == []
    # The older finish arrives afterwards (a retry that happened to be due later): it loses, and
    # it is not reported missing, because its turn exists.
    assert store.write_batch([], [], [fin("t1", "error", 10.0, error="old")]) == []
    assert outcome(store, "t1") == ("ok", None, "new", 20.0)


def test_within_one_batch_the_latest_wins_in_either_order(store: SqlStore) -> None:
    store.write_batch([], [turn("a"), turn("b")], [])
    missing = store.write_batch([], [], [fin("a", "ok", 20.0, out="new"), fin("a", "error", 10.0, error="old"),
                                         fin("b", "error", 10.0, error="old"), fin("b", "ok", 20.0, out="new")])
    assert missing == []
    assert outcome(store, "a") == outcome(store, "b") == ("ok", None, "new", 20.0)


def test_a_tie_goes_to_the_finish_applied_later(store: SqlStore) -> None:
    store.write_batch([], [turn("t")], [])
    store.write_batch([], [], [fin("t", "error", 5.0, error="first"), fin("t", "ok", 5.0, out="second")])
    assert outcome(store, "t") == ("ok", None, "second", 5.0)
    store.write_batch([], [], [fin("t", "error", 5.0, error="third")])
    assert outcome(store, "t") == ("error", "third", None, 5.0)


def test_turn_and_its_finishes_in_one_batch(store: SqlStore) -> None:
    missing = store.write_batch([], [turn("t")], [fin("t", "ok", 30.0, out="new"), fin("t", "error", 3.0, error="x")])
    assert missing == []
    assert outcome(store, "t") == ("ok", None, "new", 30.0)


def test_reapplying_a_finish_is_idempotent(store: SqlStore) -> None:
    store.write_batch([], [turn("t")], [])
    f = fin("t", "error", 7.5, error="boom", out="o1")
    for _ in range(3):
        assert store.write_batch([], [], [f]) == []
        assert outcome(store, "t") == ("error", "boom", "o1", 7.5)


def test_missing_turns_are_told_apart_from_lost_finishes(store: SqlStore) -> None:
    store.write_batch([], [turn("here")], [fin("here", "ok", 50.0)])
    finishes = [fin("here", "error", 1.0, error="older"), fin("gone", "ok", 2.0), fin("here", "error", 2.0),
                fin("gone", "error", 3.0, error="x")]
    assert store.write_batch([], [], finishes) == [1, 3]
    assert outcome(store, "here") == ("ok", None, None, 50.0)
    assert store.get_turn("gone") is None  # a finish never creates a turn


def test_ids_match_exactly(store: SqlStore) -> None:
    # Turn ids may come from callers; the multi-row statement must compare them as the primary
    # key does (binary), never case- or accent-insensitively.
    store.write_batch([], [turn("abcd"), turn("ABCD"), turn("abcé"), turn("abce")], [])
    assert store.write_batch([], [], [fin("abcd", "ok", 1.0), fin("abce", "ok", 1.0), fin("x", "ok", 1.0)]) == [2]
    assert [outcome(store, t)[0] for t in ("abcd", "ABCD", "abcé", "abce")] == ["ok", "running", "running", "ok"]


def test_large_batches_span_several_statements(store: SqlStore) -> None:
    ids = [f"t{i:04d}" for i in range(1200)]
    store.write_batch([], [turn(t) for t in ids], [])
    big = "e" * 200_000  # ~1 MB of parameters every 5 rows: byte-bounded chunks as well as counted ones
    finishes = [fin(t, "error", 100.0 + i, error=big if i % 50 == 0 else f"e{i}") for i, t in enumerate(ids)]
    older = [fin(t, "ok", 1.0) for t in ids[::3]]
    assert store.write_batch([], [], finishes + older + [fin("absent", "ok", 1.0)]) == [len(finishes) + len(older)]
    rows = {t: outcome(store, t) for t in ids}
    assert all(rows[t] == ("error", big if i % 50 == 0 else f"e{i}", None, 100.0 + i) for i, t in enumerate(ids))


@pytest.mark.integration
def test_mysql_applies_a_chunk_of_finishes_in_one_statement(mysql_dsn: str) -> None:
    s = create_store(load_config({"database": {"dsn": mysql_dsn, "pool_size": 1, "max_overflow": 0}}).database)
    try:
        s.initialize()
        ids = [f"t{i:04d}" for i in range(1000)]
        s.write_batch([], [turn(t) for t in ids], [])

        def updates() -> int:  # statements this session has run, read on the same pooled connection
            with s.engine.connect() as conn:
                rows = conn.exec_driver_sql("SHOW SESSION STATUS WHERE Variable_name IN "
                                            "('Com_update', 'Com_update_multi')").fetchall()
            return sum(int(r[1]) for r in rows)

        before = updates()
        assert s.write_batch([], [], [fin(t, "ok", 9.0) for t in ids]) == []
        # 1000 finishes, 500 per statement: 2 UPDATE statements (PyMySQL's executemany of an
        # UPDATE would have been 1000 statements, one round trip each).
        assert updates() - before == 2
        assert s.count("turns") == 1000 and {outcome(s, t)[0] for t in ids[::97]} == {"ok"}
    finally:
        s.dispose()


# -- the pure parts ----------------------------------------------------------------------------------
def test_latest_finishes_keeps_one_winner_per_turn() -> None:
    rows = [fin("a", "x", 2.0), fin("b", "x", 1.0), fin("a", "y", 1.0), fin("a", "z", 2.0), fin("b", "w", 3.0)]
    assert latest_finishes(rows) == [fin("a", "z", 2.0), fin("b", "w", 3.0)]
    assert latest_finishes([]) == []
    assert latest_finishes([fin("a", "x", None), fin("a", "y", 1.0)]) == [fin("a", "y", 1.0)]  # type: ignore[arg-type]
    assert latest_finishes([fin("a", "y", 1.0), fin("a", "x", None)]) == [fin("a", "y", 1.0)]  # type: ignore[arg-type]


def test_finish_chunks_bound_rows_and_bytes() -> None:
    rows = [fin(f"t{i}", "ok", float(i)) for i in range(7)]
    assert [len(c) for c in finish_chunks(rows, 3)] == [3, 3, 1]
    big = [fin("a", "ok", 1.0, error="x" * 600), fin("b", "ok", 1.0, error="y" * 600), fin("c", "ok", 1.0)]
    assert [len(c) for c in finish_chunks(big, 100, max_bytes=1000)] == [1, 2]
    assert [r for c in finish_chunks(big, 1, max_bytes=10) for r in c] == big
    assert finish_chunks([], 10) == []
