"""The vector search structure: exact results, filters applied before ranking, add/remove/rebuild."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.index import _vectors
from memory.index._vectors import VectorFilter, VectorIndex, VectorRow

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def rows_for(vectors: np.ndarray, sessions: list[str | None] | None = None) -> list[VectorRow]:
    out = []
    for i, v in enumerate(vectors):
        kind = "knowledge" if i % 3 == 0 else "event"
        session = (sessions[i] if sessions else (None if kind == "knowledge" else f"s{i % 4}"))
        out.append(VectorRow(kind, f"id{i}", v, session, float(i * 10)))
    return out


def brute(rows: list[VectorRow], q: np.ndarray, k: int, flt: VectorFilter) -> list[tuple[str, str]]:
    """The specification: filter every row, score by cosine, take the best k."""
    scored = []
    qn = q / np.linalg.norm(q)
    for r in rows:
        if flt.kinds is not None and r.kind not in flt.kinds:
            continue
        if flt.session_key is not None and r.session_key not in (None, flt.session_key):
            continue
        if (flt.since is not None or flt.until is not None) and r.ts is None:
            continue
        if flt.since is not None and r.ts < flt.since:  # type: ignore[operator]
            continue
        if flt.until is not None and r.ts > flt.until:  # type: ignore[operator]
            continue
        v = np.asarray(r.vector, dtype=np.float64)
        scored.append((-float(v @ qn / np.linalg.norm(v)), r.kind, r.id))
    scored.sort()
    return [(kind, id_) for _s, kind, id_ in scored[:k]]


filters = st.builds(
    VectorFilter,
    kinds=st.none() | st.sampled_from([frozenset({"event"}), frozenset({"knowledge"}), frozenset({"event", "knowledge"}),
                                       frozenset({"unknown"})]),
    session_key=st.none() | st.sampled_from(["s0", "s1", "s3", "nobody"]),
    since=st.none() | st.integers(0, 300).map(float),
    until=st.none() | st.integers(0, 300).map(float),
)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 120), st.integers(1, 30), filters, st.integers(0, 2**32 - 1))
def test_search_equals_the_brute_force_specification(n: int, k: int, flt: VectorFilter, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = rows_for(unit(rng, n))
    idx = VectorIndex(DIM)
    idx.upsert(rows)
    q = rng.standard_normal(DIM).astype(np.float32)
    got = [(h.kind, h.id) for h in idx.search(q, k, flt)]
    assert got == brute(rows, q, k, flt)


def test_filtered_search_fills_k_from_the_passing_items() -> None:
    """The post-filter failure: the best items overall are excluded, the answer must still have k."""
    rng = np.random.default_rng(1)
    q = unit(rng, 1)[0]
    near = np.vstack([q + 0.01 * unit(rng, 1)[0] for _ in range(50)])
    far = unit(rng, 50)
    idx = VectorIndex(DIM)
    idx.upsert(VectorRow("event", f"near{i}", v, "other", 1.0) for i, v in enumerate(near))
    idx.upsert(VectorRow("event", f"far{i}", v, "mine", 1.0) for i, v in enumerate(far))
    hits = idx.search(q, 10, VectorFilter(session_key="mine"))
    assert len(hits) == 10 and all(h.id.startswith("far") for h in hits)


@pytest.mark.parametrize("share", [0.01, 0.5, 1.0])
def test_gather_and_mask_paths_agree(share: float, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    n = 400
    sessions: list[str | None] = ["a" if rng.random() < share else "b" for _ in range(n)]
    rows = [VectorRow("event", f"e{i}", v, sessions[i], 1.0) for i, v in enumerate(unit(rng, n))]
    idx = VectorIndex(DIM)
    idx.upsert(rows)
    q = unit(rng, 1)[0]
    flt = VectorFilter(session_key="a")
    results = []
    for threshold in (0.0, 2.0):  # never gather / always gather
        monkeypatch.setattr(_vectors, "GATHER_BELOW", threshold)
        results.append([(h.id, round(h.score, 5)) for h in idx.search(q, 15, flt)])
    assert results[0] == results[1] and len(results[0]) == min(15, sessions.count("a"))


def test_upsert_replaces_remove_keeps_the_rest_findable() -> None:
    rng = np.random.default_rng(3)
    vecs = unit(rng, 100)
    idx = VectorIndex(DIM, capacity=1)          # growth from one row
    idx.upsert(rows_for(vecs))
    assert len(idx) == 100 and ("event", "id1") in idx
    removed = idx.remove([("event", f"id{i}") for i in range(1, 100, 3)] + [("event", "missing"), ("knowledge", "id1")])
    assert removed == 33 and len(idx) == 67
    for i, v in enumerate(vecs):
        key = ("knowledge" if i % 3 == 0 else "event", f"id{i}")
        if key in idx:                              # every remaining item is its own nearest neighbour
            top = idx.search(v, 1)[0]
            assert (top.kind, top.id) == key and top.score == pytest.approx(1.0, abs=1e-5)
        else:
            assert all((h.kind, h.id) != key for h in idx.search(v, 100))
    idx.upsert([VectorRow("event", "id2", vecs[50], "s9", 5.0)])          # replace vector and metadata
    assert len(idx) == 67
    assert [h.id for h in idx.search(vecs[50], 2, VectorFilter(session_key="s9", kinds=frozenset({"event"})))][0] == "id2"


def test_rebuild_swaps_contents_and_bad_rows_change_nothing() -> None:
    rng = np.random.default_rng(4)
    idx = VectorIndex(DIM)
    idx.upsert(rows_for(unit(rng, 10)))
    fresh = [VectorRow("event", "new", unit(rng, 1)[0], "s", 1.0), VectorRow("event", "new", unit(rng, 1)[0], "t", 2.0)]
    assert idx.rebuild(fresh) == 1
    assert idx.keys() == [("event", "new")]
    assert idx.search(fresh[1].vector, 1, VectorFilter(session_key="t"))[0].id == "new"   # later duplicate won
    for bad in (np.zeros(DIM), np.full(DIM, np.nan), np.ones(DIM + 1), [np.inf] + [0.0] * (DIM - 1)):
        with pytest.raises(ValueError):
            idx.upsert([VectorRow("event", "ok", unit(rng, 1)[0]), VectorRow("event", "bad", bad)])
        with pytest.raises(ValueError):
            idx.rebuild([VectorRow("event", "bad", bad)])
    assert idx.keys() == [("event", "new")]


def test_query_edge_cases() -> None:
    rng = np.random.default_rng(5)
    idx = VectorIndex(DIM)
    assert idx.search(unit(rng, 1)[0], 5) == []                       # empty index
    idx.upsert(rows_for(unit(rng, 5)))
    assert idx.search(np.zeros(DIM), 5) == []                         # no information
    assert idx.search(np.full(DIM, np.nan), 5) == []
    assert idx.search(unit(rng, 1)[0], 0) == []
    assert len(idx.search(unit(rng, 1)[0], 50)) == 5
    with pytest.raises(ValueError):
        idx.search(np.ones(DIM + 1), 5)
    hits = idx.search(unit(rng, 1)[0], 5, min_score=0.0)
    assert all(h.score >= 0.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_stats_report_size_and_memory() -> None:
    idx = VectorIndex(DIM, capacity=8)
    idx.upsert(rows_for(unit(np.random.default_rng(6), 20)))
    s = idx.stats()
    assert s.size == 20 and s.dim == DIM and s.capacity >= 20 and s.nbytes >= 20 * DIM * 4


def test_concurrent_writers_and_readers() -> None:
    rng = np.random.default_rng(7)
    vecs = unit(rng, 2000)
    idx = VectorIndex(DIM)
    errors: list[BaseException] = []

    def writer(lo: int) -> None:
        try:
            for i in range(lo, lo + 500):
                idx.upsert([VectorRow("event", f"e{i}", vecs[i], f"s{i % 5}", float(i))])
                if i % 7 == 0 and i - 3 >= lo:        # only this writer's own, already added items
                    idx.remove([("event", f"e{i - 3}")])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(300):
                for h in idx.search(vecs[i], 5, VectorFilter(session_key="s1", since=0.0)):
                    assert h.kind == "event"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(lo,)) for lo in (0, 500, 1000, 1500)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    removed = {f"e{i - 3}" for lo in (0, 500, 1000, 1500) for i in range(lo, lo + 500) if i % 7 == 0 and i - 3 >= lo}
    assert {k[1] for k in idx.keys()} == {f"e{i}" for i in range(2000)} - removed
    for i in (1, 500, 1999):
        if f"e{i}" not in removed:
            assert idx.search(vecs[i], 1)[0].id == f"e{i}"
