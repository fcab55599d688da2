"""Fusion of keyword and vector ranks, recency, salience, and recall's argument parsing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.index._fusion import FusionParams, Hit, Why, fuse, parse_kinds, parse_time_bound, recency_factor

NOW = 1_700_000_000.0
DAY = 86400.0
A, B, C, D = ("knowledge", "a"), ("knowledge", "b"), ("event", "c"), ("event", "d")


def by_id(fused: tuple) -> dict[str, object]:
    return {f.id: f for f in fused}


def test_rrf_contributions_and_order() -> None:
    out = fuse([A, B, C], [(B, 0.9), (D, 0.8), (A, 0.1)], now=NOW, ts={})
    f = by_id(out)
    assert f["a"].why.keyword == pytest.approx(1 / 61) and f["a"].why.vector == pytest.approx(1 / 63)
    assert f["b"].why.keyword_rank == 2 and f["b"].why.vector_rank == 1 and f["b"].why.similarity == 0.9
    assert f["c"].why.vector_rank is None and f["c"].why.vector == 0.0 and f["c"].why.similarity is None
    assert f["d"].why.keyword_rank is None
    assert [x.id for x in out] == ["b", "a", "d", "c"]             # both lists beat one; then by rank
    for x in out:
        w = x.why
        assert x.score == pytest.approx((w.keyword + w.vector) * w.recency * w.salience)


def test_weights_and_k() -> None:
    p = FusionParams(rrf_k=10, keyword_weight=2.0, vector_weight=0.0)
    f = by_id(fuse([A], [(B, 1.0)], now=NOW, ts={}, params=p))
    assert f["a"].score == pytest.approx(2 / 11) and f["b"].score == 0.0


def test_recency_fades_events_only_and_keeps_a_floor() -> None:
    p = FusionParams(recency_weight=0.4, half_life_s=DAY)
    assert recency_factor(0, p) == pytest.approx(1.0)
    assert recency_factor(DAY, p) == pytest.approx(0.6 + 0.4 * 0.5)
    assert recency_factor(1e12, p) == pytest.approx(0.6)                 # old never drops below 1 - w
    assert recency_factor(-DAY, p) == pytest.approx(1.0)                 # a clock step back is no bonus
    ts = {C: NOW - DAY, D: NOW, A: NOW - 100 * DAY}
    f = by_id(fuse([C, D, A], [], now=NOW, ts=ts, params=p))
    assert f["c"].why.recency == pytest.approx(0.8) and f["d"].why.recency == pytest.approx(1.0)
    assert f["a"].why.recency == 1.0                                     # notes do not fade by default
    f2 = by_id(fuse([A], [], now=NOW, ts=ts, params=dataclasses.replace(p, recency_kinds=frozenset({"knowledge"}))))
    assert f2["a"].why.recency == pytest.approx(0.6, abs=1e-6)
    assert by_id(fuse([C], [], now=NOW, ts={C: None}, params=p))["c"].why.recency == 1.0
    assert by_id(fuse([C], [], now=NOW, ts={C: math.nan}, params=p))["c"].why.recency == 1.0


def test_recent_event_overtakes_an_old_one_of_similar_rank() -> None:
    out = fuse([C, D], [], now=NOW, ts={C: NOW - 60 * DAY, D: NOW - 60}, params=FusionParams())
    assert [x.id for x in out] == ["d", "c"]


@pytest.mark.parametrize("value, expected", [
    (2.0, 2.0), (0.0, 0.0), (1e9, 10.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), ("3", 3.0), (None, 1.0),
])
def test_salience_hook_values(value: object, expected: float) -> None:
    f = fuse([A], [], now=NOW, ts={}, salience=lambda kind, id_: value)[0]  # type: ignore[arg-type, return-value]
    assert f.why.salience == expected and f.score == pytest.approx(expected / 61)


def test_salience_hook_that_raises_is_neutral_and_sees_kind_and_id() -> None:
    seen: list[tuple[str, str]] = []

    def hook(kind: str, id_: str) -> float:
        seen.append((kind, id_))
        if id_ == "b":
            raise RuntimeError("decay module broken")
        return 2.0

    f = by_id(fuse([A, B], [], now=NOW, ts={}, salience=hook))
    assert f["a"].why.salience == 2.0 and f["b"].why.salience == 1.0
    assert sorted(seen) == [A, B]


def test_duplicates_ties_and_limit() -> None:
    out = fuse([A, A, B], [(C, 0.5), (C, 0.9)], now=NOW, ts={}, limit=2)
    assert len(out) == 2
    full = by_id(fuse([A, A, B], [(C, 0.5), (C, 0.9)], now=NOW, ts={}))
    assert full["b"].why.keyword_rank == 2 and full["c"].why.similarity == 0.5
    tie = fuse([], [(B, 0.5)], now=NOW, ts={}) + fuse([], [(A, 0.5)], now=NOW, ts={})
    assert fuse([A], [(B, 0.5)], now=NOW, ts={})[0].id == "a"            # equal scores: by (kind, id)
    assert len(tie) == 2 and fuse([], [], now=NOW, ts={}) == ()
    assert fuse([A, B], [], now=NOW, ts={}, limit=0) == ()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([A, B, C, D]), max_size=6), st.lists(st.sampled_from([A, B, C, D]), max_size=6),
       st.floats(0, 1e7))
def test_fusion_is_deterministic_sorted_and_consistent(kw: list, vec: list, age: float) -> None:
    ts = {C: NOW - age, D: NOW - age / 2}
    out = fuse(kw, [(k, 0.5) for k in vec], now=NOW, ts=ts)
    assert out == fuse(list(kw), [(k, 0.5) for k in vec], now=NOW, ts=dict(ts))
    assert {(f.kind, f.id) for f in out} == set(kw) | set(vec)
    assert [f.score for f in out] == sorted((f.score for f in out), reverse=True)
    assert all(f.score > 0 for f in out)


def test_params_validation() -> None:
    FusionParams(recency_weight=0.0, keyword_weight=0.0)
    for bad in ({"rrf_k": 0}, {"rrf_k": -1}, {"recency_weight": 1.5}, {"half_life_s": 0}, {"keyword_weight": -1},
                {"vector_weight": math.nan}, {"rrf_k": True}, {"recency_kinds": frozenset({"turn"})},
                {"max_salience": 0}):
        with pytest.raises(ValueError, match="recall"):
            FusionParams(**bad)  # type: ignore[arg-type]


def test_hit_is_frozen_and_serializable() -> None:
    why = Why(1, 1 / 61, None, 0.0, None, 1.0, 1.0)
    hit = Hit("event", "e1", 0.5, None, "snippet", "chat:1", NOW, why)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.score = 1.0  # type: ignore[misc]
    d = hit.as_dict()
    assert d["why"]["keyword_rank"] == 1 and d["session_key"] == "chat:1" and d["title"] is None


# -- since / until / kinds -----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, None),
    (1_600_000_000, 1_600_000_000.0),
    (1.5, 1.5),
    (dt.datetime(2024, 5, 1, 8, 0), dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc).timestamp()),
    (dt.datetime(2024, 5, 1, 17, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
     dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc).timestamp()),
    (dt.date(2024, 5, 1), dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc).timestamp()),
    ("7d", NOW - 7 * DAY), ("12h", NOW - 12 * 3600), ("30m", NOW - 1800), ("45s", NOW - 45), ("2w", NOW - 14 * DAY),
    ("1.5d", NOW - 1.5 * DAY), (" 3 days ", NOW - 3 * DAY), ("10MIN", NOW - 600), ("now", NOW),
    ("1600000000", 1_600_000_000.0),
    ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc).timestamp()),
    ("2024-05-01T08:00:00Z", dt.datetime(2024, 5, 1, 8, tzinfo=dt.timezone.utc).timestamp()),
    ("2024-05-01T17:00+09:00", dt.datetime(2024, 5, 1, 8, tzinfo=dt.timezone.utc).timestamp()),
])
def test_parse_time_bound(value: object, expected: float | None) -> None:
    got = parse_time_bound(value, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("bad", [True, math.nan, math.inf, "", "yesterday", "7 fortnights", "-7d", "d7", "nan", "inf",
                                 [1], object(), "2024-13-01"])
def test_parse_time_bound_rejects_with_a_clear_message(bad: object) -> None:
    with pytest.raises(ValueError, match="time bound"):
        parse_time_bound(bad, now=NOW)


def test_parse_kinds() -> None:
    assert parse_kinds(("knowledge", "event")) == frozenset({"knowledge", "event"})
    assert parse_kinds(["event"]) == frozenset({"event"})
    assert parse_kinds("knowledge") == frozenset({"knowledge"})
    for bad in ((), [], "turns", ("event", "turn"), None, 5, ["Event"], [["event"]]):
        with pytest.raises(ValueError, match="kinds"):
            parse_kinds(bad)
