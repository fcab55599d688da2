"""The in-process vector search structure: exact cosine search over a float32 matrix.

The database holds the vectors (the truth: id, kind, embedder name and dimension); this
structure is rebuilt from those rows at start-up (``rebuild``) and kept in step afterwards
(``upsert`` / ``remove``).

Why exact NumPy and not an ANN graph (measured by ``bench/bench_recall_parts.py`` at 100k
items on this 2-core machine; hash-embedding vectors of a mixed en/zh/ko corpus):

=================  ===================  ===================  =====================
                   exact, 256 / 384 dim HNSW (hnswlib M=16)   brute-force Python
=================  ===================  ===================  =====================
query p95          6.8 / 10.9 ms        0.4 / 0.6 ms (ef 64)  1.3 / 2.1 s
recall@10          1.0                  0.76 / 0.80 (ef 64),  1.0
                                        0.89 / 0.91 (ef 200)
1 % filter p95     0.4 / 0.3 ms         31 / 39 ms (callback)
build              1.0 / 1.3 s          20 / 31 s, both cores
memory             102 / 154 MB matrix  + its own copy + graph
=================  ===================  ===================  =====================

Exact search fits the recall budget (p95 ≤ 20 ms with the query embedding and the keyword
search) with room to spare, loses no result, filters exactly and cheaply, and rebuilds in
the time it takes to read the rows; the graph would cost half a minute of both cores at every
start-up and embedder switch (competing with the writer), return 10–25 % wrong neighbours on
these vectors, and be slower than exact as soon as a session filter applies. Exact cost grows
linearly: past ~250k items at 384 dimensions, an ANN accelerator for unfiltered queries
(exact kept for filtered ones) becomes worth its build.

Guarantees:

* Scores are cosine similarities (rows and queries are unit vectors; a query is normalized
  here, a zero query finds nothing). Results are ordered by score, ties by key, and hold at most
  ``k`` items, each passing the filter and ``min_score``.
* **Filtering happens before ranking**, on per-row metadata (kind, session, time) kept in NumPy
  arrays beside the matrix: a filtered search returns the best ``k`` *among the items that pass*,
  never fewer because better excluded ones took the slots (the usual post-filter failure). A
  filter that keeps a small share of the rows scores only those rows (gather, then multiply);
  otherwise the whole matrix is scored and the excluded rows are masked.
* ``upsert`` of an existing key replaces its vector and metadata; ``remove`` of an unknown key
  is a no-op; removal moves the last row into the hole, so the matrix stays dense. A bad vector
  (wrong shape, NaN, infinity, all zero) raises ``ValueError`` and changes nothing.
* ``rebuild`` prepares the new matrix outside the lock and swaps it in at once: searches during
  a rebuild see the old contents, never a half-built one. Every method is thread-safe.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np

#: Below this share of rows passing the filter, score only those rows: gathering them costs
#: less than scoring the whole matrix (measured at 100k × 256: 5 % → 0.5 ms, 10 % → 1.5 ms,
#: 20 % → 3.9 ms, all rows → 4.3 ms, 30 % → 5.8 ms).
GATHER_BELOW = 0.2
_NO_SESSION = -1

Key = tuple[str, str]  # (kind, id): a note key and an event id can never collide


@dataclasses.dataclass(frozen=True)
class VectorRow:
    """One item to index: its kind and id, its vector, and the metadata filters look at."""

    kind: str
    id: str
    vector: Sequence[float] | np.ndarray
    session_key: str | None = None
    ts: float | None = None


@dataclasses.dataclass(frozen=True)
class VectorFilter:
    """Which items a search may return. ``None`` means "no restriction" for each field.

    ``session_key`` keeps items of that session *and items that belong to no session* (notes are
    shared knowledge); ``since``/``until`` bound ``ts`` inclusively and exclude items without one.
    """

    kinds: frozenset[str] | None = None
    session_key: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def is_empty(self) -> bool:
        return self.kinds is None and self.session_key is None and self.since is None and self.until is None


@dataclasses.dataclass(frozen=True)
class VectorHit:
    kind: str
    id: str
    score: float


@dataclasses.dataclass(frozen=True)
class VectorStats:
    size: int
    dim: int
    capacity: int
    nbytes: int


def _unit_rows(rows: list[VectorRow], dim: int) -> np.ndarray:
    """The rows' vectors as one normalized (m, dim) float32 matrix; ``ValueError`` names a bad row."""
    mat = np.empty((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        v = np.asarray(r.vector, dtype=np.float32).reshape(-1)
        if v.shape != (dim,):
            raise ValueError(f"{r.kind} {r.id!r}: expected {dim} dimensions, got {v.shape[0]}")
        mat[i] = v
    finite = np.isfinite(mat).all(axis=1)
    norms = np.linalg.norm(mat, axis=1)
    bad = np.flatnonzero(~finite | (norms == 0))
    if bad.size:
        r = rows[int(bad[0])]
        what = "holds NaN or infinity" if not finite[bad[0]] else "is a zero vector (nothing to index)"
        raise ValueError(f"{r.kind} {r.id!r}: vector {what}")
    mat /= norms[:, None]
    return mat


def _dot(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Matrix × vector. NumPy's own einsum loop, not BLAS ``@``: scoring 100k rows is bound by
    memory bandwidth, and the bundled OpenBLAS sgemv measured 2-3× slower here (and spawns
    threads that contend with the writer); see ``bench/bench_recall_parts.py``."""
    return np.einsum("ij,j->i", matrix, q)


class _Arrays:
    """The matrix and its metadata columns; replaced whole by ``rebuild``."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.size = 0
        self.matrix = np.zeros((capacity, dim), dtype=np.float32)
        self.kind = np.zeros(capacity, dtype=np.int16)
        self.session = np.full(capacity, _NO_SESSION, dtype=np.int32)
        self.ts = np.full(capacity, np.nan, dtype=np.float64)
        self.keys: list[Key] = []
        self.row_of: dict[Key, int] = {}

    def grow(self, need: int) -> None:
        cap = self.matrix.shape[0]
        if need <= cap:
            return
        new = max(need, cap * 2, 1024)
        for name in ("matrix", "kind", "session", "ts"):
            old = getattr(self, name)
            fill = {"matrix": 0, "kind": 0, "session": _NO_SESSION, "ts": np.nan}[name]
            arr = np.full((new,) + old.shape[1:], fill, dtype=old.dtype)
            arr[: self.size] = old[: self.size]
            setattr(self, name, arr)


class VectorIndex:
    """Exact cosine search with pre-filtering; see the module docstring for the guarantees."""

    def __init__(self, dim: int, *, capacity: int = 1024) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self._lock = threading.RLock()
        self._a = _Arrays(dim, max(1, capacity))
        # Small interning tables: kinds and sessions as integers make the filter vectorized.
        self._kind_code: dict[str, int] = {}
        self._session_code: dict[str, int] = {}

    # -- writing -------------------------------------------------------------------------
    def _code(self, table: dict[str, int], value: str) -> int:
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    def upsert(self, rows: Iterable[VectorRow]) -> int:
        """Add or replace items; returns how many. Validates every row before changing anything."""
        batch = list(rows)
        mat = _unit_rows(batch, self.dim)
        last: dict[Key, int] = {}
        for i, row in enumerate(batch):
            last[(row.kind, row.id)] = i                   # a later row of the same key wins
        with self._lock:
            a = self._a
            a.grow(a.size + len(last))
            pos = np.empty(len(last), dtype=np.int64)
            for j, (key, i) in enumerate(last.items()):
                row = batch[i]
                p = a.row_of.get(key)
                if p is None:
                    p = a.row_of[key] = a.size
                    a.size += 1
                    a.keys.append(key)
                pos[j] = p
                a.kind[p] = self._code(self._kind_code, row.kind)
                a.session[p] = _NO_SESSION if row.session_key is None else self._code(self._session_code,
                                                                                      row.session_key)
                a.ts[p] = np.nan if row.ts is None else float(row.ts)
            a.matrix[pos] = mat[list(last.values())]
        return len(batch)

    def remove(self, keys: Iterable[Key]) -> int:
        """Remove items by (kind, id); unknown keys are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            a = self._a
            for key in keys:
                pos = a.row_of.pop(tuple(key), None)  # type: ignore[arg-type]
                if pos is None:
                    continue
                last = a.size - 1
                if pos != last:  # keep the matrix dense: the last row fills the hole
                    moved = a.keys[last]
                    a.matrix[pos], a.kind[pos], a.session[pos], a.ts[pos] = (
                        a.matrix[last], a.kind[last], a.session[last], a.ts[last])
                    a.keys[pos] = moved
                    a.row_of[moved] = pos
                a.keys.pop()
                a.size = last
                removed += 1
        return removed

    def rebuild(self, rows: Iterable[VectorRow]) -> int:
        """Replace everything with ``rows`` (later duplicates of a key win). Invalid rows raise
        ``ValueError`` before anything changes. Returns the new size."""
        fresh = VectorIndex(self.dim)
        fresh.upsert(rows)
        with self._lock:
            self._a, self._kind_code, self._session_code = fresh._a, fresh._kind_code, fresh._session_code
            return self._a.size

    # -- reading -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._a.size

    def __contains__(self, key: object) -> bool:
        return key in self._a.row_of

    def ts_of(self, key: Key) -> float | None:
        """The stored time of an item (None if absent or timeless)."""
        with self._lock:
            p = self._a.row_of.get(key)
            if p is None:
                return None
            t = float(self._a.ts[p])
            return None if math.isnan(t) else t

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._a.keys)

    def stats(self) -> VectorStats:
        with self._lock:
            a = self._a
            nbytes = a.matrix.nbytes + a.kind.nbytes + a.session.nbytes + a.ts.nbytes
            return VectorStats(a.size, self.dim, a.matrix.shape[0], nbytes)

    def _mask(self, a: _Arrays, flt: VectorFilter) -> np.ndarray | None:
        """Boolean mask over rows ``[0, size)`` of the items passing ``flt`` (None: all pass)."""
        if flt.is_empty:
            return None
        n = a.size
        mask = np.ones(n, dtype=bool)
        if flt.kinds is not None:
            codes = [self._kind_code[k] for k in flt.kinds if k in self._kind_code]
            mask &= np.isin(a.kind[:n], np.array(codes, dtype=np.int16))
        if flt.session_key is not None:
            code = self._session_code.get(flt.session_key, -2)  # -2: matches no row
            sess = a.session[:n]
            mask &= (sess == code) | (sess == _NO_SESSION)
        if flt.since is not None or flt.until is not None:
            ts = a.ts[:n]
            ok = np.isfinite(ts)
            if flt.since is not None:
                ok &= ts >= flt.since
            if flt.until is not None:
                ok &= ts <= flt.until
            mask &= ok
        return mask

    def search(self, query: Sequence[float] | np.ndarray, k: int, flt: VectorFilter | None = None, *,
               min_score: float | None = None) -> list[VectorHit]:
        """The ``k`` most similar items passing ``flt`` (and ``min_score``), best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape != (self.dim,):
            raise ValueError(f"query: expected {self.dim} dimensions, got {q.shape[0]}")
        norm = float(np.linalg.norm(q)) if np.all(np.isfinite(q)) else 0.0
        if k <= 0 or norm == 0.0:
            return []
        q = q / norm
        with self._lock:
            a = self._a
            n = a.size
            if n == 0:
                return []
            mask = self._mask(a, flt or VectorFilter())
            if mask is None:
                rows = None
                scores = _dot(a.matrix[:n], q)
            else:
                count = int(mask.sum())
                if count == 0:
                    return []
                if count < GATHER_BELOW * n:
                    rows = np.flatnonzero(mask)
                    scores = _dot(a.matrix[rows], q)
                else:
                    rows = None
                    scores = _dot(a.matrix[:n], q)
                    scores[~mask] = -np.inf
            if min_score is not None:
                scores = np.where(scores >= min_score, scores, -np.inf)
            top = min(k, len(scores))
            cand = np.argpartition(-scores, top - 1)[:top] if top < len(scores) else np.arange(len(scores))
            cand = cand[np.isfinite(scores[cand])]
            positions = cand if rows is None else rows[cand]
            hits = [VectorHit(a.keys[p][0], a.keys[p][1], float(scores[c])) for c, p in zip(cand, positions)]
        hits.sort(key=lambda h: (-h.score, h.kind, h.id))
        return hits
