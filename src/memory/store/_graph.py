"""The graph's storage: typed, weighted edges between items, and bounded walks over them.

A mixin of :class:`~memory.store.SqlStore` (table ``graph_edges``, migration 0004). Items are
event ids, turn ids and knowledge keys (strings of at most 255 characters); an edge is one row per
``(src, dst, type)``. The guarantees the service builds on:

* **Re-adding updates, never duplicates.** ``upsert_edges`` inserts by primary key; an edge that
  exists gets the weight of the *latest* assertion (by its time ``at``, later in the batch on a
  tie), ``updated_at`` the latest time and ``created_at`` the earliest. Applying rows in any order,
  or again (a journal replayed after a crash), therefore leaves the same row.
* **At most ``max_edges_per_item`` outgoing edges per item.** After the upsert, every source the
  batch touched keeps its best edges; the rest are evicted, lowest weight first, the oldest
  (``created_at``) on a tie, then by ``dst`` and ``type`` so the choice is deterministic. The new
  edge itself is evicted if it is the lowest. Set-based, per 500 sources: one index-only count
  finds the sources over the cap, one DELETE ranks and trims only theirs. Incoming edges are not
  capped (a popular note may be linked from anywhere). The cap holds with concurrent writers
  too: SQLite has one writer at a time; on MariaDB (READ COMMITTED) the count is a locking read,
  so a second transaction adding to the same source waits for the first and then counts its edges
  as well (a plain read would not see them, and both could stop one edge short of trimming).
* **A walk is one statement.** ``related`` is a single recursive CTE (SQLite and MariaDB 10.11):
  the database expands the frontier, so a depth-2 walk costs one round trip, not one per node.
* **Edges are undirected for ``related`` by default.** Seed 000 speaks of an item's neighbours, and
  an edge written from the newer item (a turn's ``input`` event, a note's ``links_to``) relates
  both ends: a note should find the notes linking to it. ``direction="out"`` (or ``"in"``) follows
  edges one way only. Distances count hops.
* **A walk terminates on any graph.** Rows of the walk are ``(node, distance)`` pairs, deduplicated
  (``UNION``), and no row is expanded past ``depth``; cycles and self-loops only add pairs that are
  already present. An item reached several ways reports its shortest distance. The work is bounded
  by the neighbourhood within ``depth`` hops; in both directions that includes uncapped incoming
  edges, so a hub makes a deep walk from near it expensive (``limit`` cuts only the answer).

Ids compare exactly: the columns are ``utf8mb4_bin`` on MariaDB, SQLite's BINARY elsewhere (both
code-point order, so ties sort alike). MariaDB's ``_bin`` collations pad, so ids differing only in
trailing spaces are one id there, as everywhere else in this schema.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from typing import Any

from .._errors import StoreRejected
from ._recall import KIND_NOTE, chunks

MAX_ID = 255  # item ids: VARCHAR(255)
MAX_TYPE = 32  # edge types: VARCHAR(32)
DIRECTIONS = ("out", "in", "both")
_CHUNK = 500  # sources per IN (...) list: far below every backend's parameter limit
EDGE_COLS = "src, dst, type, weight, created_at, updated_at"

#: An edge as stored and returned: ``(src, dst, type, weight, created_at, updated_at)``.
EdgeRow = tuple[str, str, str, float, float, float]


@dataclasses.dataclass(frozen=True)
class GraphStatements:
    """The statements that differ between dialects (everything else is shared SQL)."""

    upsert: str  # one edge: src, dst, type, weight, created_at, updated_at
    evict: str  # ``{marks}``: the sources; then the cap
    rename: str  # old, new, old, new, old, old (see ``rename_item``)
    lock: str  # appended to the count before an eviction (see the module docstring)
    start: str  # the walk's first row, typed like the columns it is compared with


_KEEP_ORDER = "weight DESC, created_at DESC, dst DESC, type DESC"  # the reverse of the eviction order
_RANKED = (f"SELECT src, dst, type, ROW_NUMBER() OVER (PARTITION BY src ORDER BY {_KEEP_ORDER}) AS rn "
           "FROM graph_edges WHERE src IN ({marks})")
_MOVED = ("SELECT CASE WHEN g.src = {p} THEN {p} ELSE g.src END, CASE WHEN g.dst = {p} THEN {p} ELSE g.dst END, "
          "g.type, g.weight, g.created_at, g.updated_at FROM graph_edges g WHERE g.src = {p} OR g.dst = {p}")

SQLITE = GraphStatements(
    upsert=(f"INSERT INTO graph_edges ({EDGE_COLS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(src, dst, type) DO UPDATE "
            "SET weight = CASE WHEN excluded.updated_at >= graph_edges.updated_at THEN excluded.weight "
            "ELSE graph_edges.weight END, created_at = MIN(graph_edges.created_at, excluded.created_at), "
            "updated_at = MAX(graph_edges.updated_at, excluded.updated_at)"),
    # The key is the (WITHOUT ROWID) table's primary key: the IN list drives key lookups.
    evict=f"DELETE FROM graph_edges WHERE (src, dst, type) IN (SELECT src, dst, type FROM ({_RANKED}) WHERE rn > ?)",
    rename=(f"INSERT INTO graph_edges ({EDGE_COLS}) {_MOVED.format(p='?')} ON CONFLICT(src, dst, type) DO UPDATE "
            "SET weight = MAX(graph_edges.weight, excluded.weight), "
            "created_at = MIN(graph_edges.created_at, excluded.created_at), "
            "updated_at = MAX(graph_edges.updated_at, excluded.updated_at)"),
    start="?",
    lock="",  # BEGIN IMMEDIATE: the transaction already holds the only write lock
)

MYSQL = GraphStatements(
    # Assignments run left to right and see earlier ones: ``weight`` must read the old updated_at.
    upsert=(f"INSERT INTO graph_edges ({EDGE_COLS}) VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
            "weight = IF(VALUES(updated_at) >= updated_at, VALUES(weight), weight), "
            "created_at = LEAST(created_at, VALUES(created_at)), "
            "updated_at = GREATEST(updated_at, VALUES(updated_at))"),
    # A join, not ``WHERE (...) IN (subquery)``: MariaDB 10.11 runs a single-table DELETE's
    # subquery per row of a scan instead of as a semi-join, which on a big table is a full scan.
    evict=(f"DELETE g FROM graph_edges g JOIN (SELECT src, dst, type FROM ({_RANKED}) r WHERE rn > %s) x "
           "ON g.src = x.src AND g.dst = x.dst AND g.type = x.type"),
    rename=(f"INSERT INTO graph_edges ({EDGE_COLS}) {_MOVED.format(p='%s')} ON DUPLICATE KEY UPDATE "
            "weight = GREATEST(graph_edges.weight, VALUES(weight)), "
            "created_at = LEAST(graph_edges.created_at, VALUES(created_at)), "
            "updated_at = GREATEST(graph_edges.updated_at, VALUES(updated_at))"),
    # A recursive CTE's column types come from its first row: a bare parameter would type the
    # walk's ``node`` as a string of the start id's length (longer ids truncated or refused) in
    # the connection's collation (a mix with the columns' utf8mb4_bin, and no index use).
    start="CAST(%s AS CHAR(255) CHARACTER SET utf8mb4) COLLATE utf8mb4_bin",
    lock=" FOR UPDATE",
)


def edge_problem(row: Sequence[Any]) -> str | None:
    """Why a row given to ``upsert_edges`` is unacceptable, or None.

    Checked in Python so both dialects refuse the same rows (SQLite would store a 300-character id
    that MariaDB refuses, and a NaN weight fails differently on each).
    """
    if len(row) not in (4, 5):
        return f"an edge is (src, dst, type, weight[, at]), found {len(row)} values"
    src, dst, kind, weight = row[0], row[1], row[2], row[3]
    for name, value, limit in (("src", src, MAX_ID), ("dst", dst, MAX_ID), ("type", kind, MAX_TYPE)):
        if not isinstance(value, str) or not value:
            return f"edge {name} must be a non-empty string, found {value!r:.80}"
        if len(value) > limit:
            return f"edge {name} is longer than {limit} characters ({len(value)})"
    for name, value in (("weight", weight), ("at", row[4] if len(row) == 5 else 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"edge {name} must be a finite number, found {value!r:.80}"
    return None


@dataclasses.dataclass(frozen=True)
class GraphWrites:
    """What the store writes to the graph on its own (set from ``graph:`` by the service).

    ``enabled`` False: no automatic edges at all (edge records already journaled still apply).
    ``turn_edges``: a turn's ``input`` and ``output`` edges, in the transaction of the turn / finish
    rows. ``link_edges``: a note's ``links_to`` edges, in the transaction of its row.
    """

    enabled: bool = True
    max_edges_per_item: int | None = 20
    turn_edges: bool = True
    link_edges: bool = True


INPUT, OUTPUT, LINKS_TO = "input", "output", "links_to"
#: ``(dst, weight, at)`` wanted for one source (see ``replace_out_edges``).
Wanted = tuple[str, float, float]
Rows = Sequence[Sequence[Any]]
#: A tombstone's ``(kind, item_id)``: decay's kinds, ``event`` and ``knowledge``.
Tomb = tuple[str, str]


def forgotten_of(tombs: Iterable[Tomb], live_notes: Container[str]) -> set[Tomb]:
    """The tombstones that still mean "forgotten". An event's always: nothing brings a tombstoned
    event back but a restore, which deletes the tombstone. A note's unless a note lives at its key
    again: a human wrote a new note there (the tombstone stays, so restoring the old note is
    refused while its place is taken), and the new note is an item like any other."""
    return {(k, i) for k, i in tombs if not (k == KIND_NOTE and i in live_notes)}


def batch_ids(events: Rows, turns: Rows, finishes: Rows, edges: Rows, turn_edges: bool) -> list[Any]:
    """The ids of a write batch that may name a forgotten item: its events, both ends of its edge
    records and, when turns get edges, the turns' inputs and the finishes' outputs (a turn itself
    is never forgotten). The writer looks them up at once: one indexed read per batch."""
    ids = [e[0] for e in events] + [x for r in edges if len(r) == 6 for x in (r[1], r[2])]
    if turn_edges:
        ids += [t[2] for t in turns if len(t) > 2] + [f[3] for f in finishes if len(f) > 3]
    return ids


def forgotten_notes(rows: Mapping[str, Any], tombs: Mapping[str, str]) -> set[str]:
    """Keys of note rows (key -> digest) that are forgotten notes coming back: the key has a note
    tombstone and the row holds the very content forgotten (the same digest: a file the move to
    the trash missed, or one put back by hand). Another digest is a new note written at that key."""
    return {k for k, d in rows.items() if k in tombs and str(d)[:64] == tombs[k]}


class Forgotten:
    """The forgotten ids among those one transaction asked about: a memo, never shared.

    ``ask(ids)`` looks up only ids not asked before, through ``find`` (the store's read of the
    tombstones; None: nothing is forgotten, as for a schema before tombstones); ``id in forgotten``
    then answers from memory. The writer asks about every id of a batch up front, so the write
    path pays one indexed read per batch that names any id, and none for a batch that names none.
    """

    def __init__(self, find: Callable[[list[str]], set[Tomb]] | None = None, *,
                 asked: Iterable[str] = (), gone: Iterable[Tomb] = ()) -> None:
        self._find = find
        self._asked = set(asked)
        self._gone = set(gone)
        self._ids = {i for _, i in self._gone}

    def ask(self, ids: Iterable[Any]) -> None:
        if self._find is None:
            return
        asked = self._asked
        new = list(dict.fromkeys(i for i in ids if i not in asked and isinstance(i, str) and i))
        if new:
            self._asked.update(new)
            found = self._find(new)
            self._gone |= found
            self._ids |= {i for _, i in found}

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._ids

    @property
    def empty(self) -> bool:
        """Nothing forgotten among the ids asked about (the usual case: no filtering at all)."""
        return not self._ids

    def of_kind(self, kind: str) -> set[str]:
        return {i for k, i in self._gone if k == kind}

    def keep(self, rows: Sequence[Sequence[Any]], ends: Sequence[int] = (0, 1)) -> list[Any]:
        """``rows`` without those any of whose ``ends`` (column positions) names a forgotten id."""
        self.ask(r[e] for r in rows for e in ends)
        if not self._ids:
            return list(rows)
        return [r for r in rows if not any(r[e] in self._ids for e in ends)]


def _finite(value: Any, default: float) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _check_cap(max_edges_per_item: int | None) -> None:
    if max_edges_per_item is not None and (isinstance(max_edges_per_item, bool)
                                           or not isinstance(max_edges_per_item, int) or max_edges_per_item < 1):
        raise ValueError(f"max_edges_per_item: expected a positive integer or None, found {max_edges_per_item!r}")


def _check_direction(direction: str, allowed: Sequence[str] = DIRECTIONS) -> None:
    if direction not in allowed:
        raise ValueError(f"direction: expected one of {', '.join(allowed)}, found {direction!r}")


class GraphSql:
    """Mixed into ``SqlStore``; uses its ``_errors``, ``_raw_write``, ``_fetch``, ``param``, ``dialect``."""

    param: str
    dialect: str
    #: The automatic edges this store writes; the service replaces it with ``graph:``'s settings.
    graph_writes: GraphWrites = GraphWrites()

    @property
    def graph_sql(self) -> GraphStatements:
        return SQLITE if self.dialect == "sqlite" else MYSQL

    # -- writes ------------------------------------------------------------------------------------
    def upsert_edges(self, cur: Any, rows: Sequence[Sequence[Any]], max_edges_per_item: int | None,
                     now: float | None = None) -> int:
        """Within the caller's transaction: add or update edges, then enforce the per-item cap.

        ``rows`` are ``(src, dst, type, weight)`` or ``(src, dst, type, weight, at)``, where ``at``
        is when the edge was asserted (default ``now``): a journal replaying old records passes their
        own times, so a replay never overrides a newer weight. ``max_edges_per_item=None`` skips the
        cap. Returns how many edges the cap evicted. Raises :class:`~memory.StoreRejected` before
        touching the database if any row is unacceptable (the writer then bisects the batch).
        """
        _check_cap(max_edges_per_item)
        if not rows:
            return 0
        for row in rows:
            problem = edge_problem(row)
            if problem is not None:
                raise StoreRejected(problem)
        t = time.time() if now is None else float(now)
        params = []
        for r in rows:
            at = float(r[4]) if len(r) == 5 else t
            params.append((r[0], r[1], r[2], float(r[3]), at, at))
        # In key order (stable, so repeats of one edge keep their order): two processes writing
        # overlapping edges then lock rows in the same order, and InnoDB picks no deadlock victim.
        params.sort(key=lambda p: (p[0], p[1], p[2]))
        cur.executemany(self.graph_sql.upsert, params)
        if max_edges_per_item is None:
            return 0
        return self._evict(cur, sorted({p[0] for p in params}), max_edges_per_item)

    def _evict(self, cur: Any, sources: Sequence[str], cap: int) -> int:
        """Cap ``sources``: first find those over the cap (an index-only count, usually none),
        then rank and delete only their edges (the ranking needs a sort and a temporary table)."""
        evicted = 0
        for i in range(0, len(sources), _CHUNK):
            chunk = list(sources[i:i + _CHUNK])
            cur.execute(f"SELECT src FROM graph_edges WHERE src IN ({', '.join([self.param] * len(chunk))}) "
                        f"GROUP BY src HAVING COUNT(*) > {self.param}{self.graph_sql.lock}", [*chunk, cap])
            over = [r[0] for r in cur.fetchall()]
            if over:
                cur.execute(self.graph_sql.evict.format(marks=", ".join([self.param] * len(over))), [*over, cap])
                evicted += max(0, int(cur.rowcount))
        return evicted

    def add_edges(self, rows: Sequence[Sequence[Any]], max_edges_per_item: int | None,
                  now: float | None = None) -> int:
        """``upsert_edges`` in a transaction of its own. Returns how many edges were evicted."""
        _check_cap(max_edges_per_item)  # a caller's mistake stays a ValueError, not a rejected row
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            return self.upsert_edges(cur, rows, max_edges_per_item, now)

    def remove_item(self, item_id: str) -> int:
        """Delete every edge from or to ``item_id`` (one transaction). Returns how many."""
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            return self._remove(cur, item_id)

    def rename_item(self, old: str, new: str, max_edges_per_item: int | None = None) -> int:
        """Give ``old``'s edges (both directions, self-loops included) to ``new``, in one transaction.

        For a note that moved: its key changes, its relations stay. An edge that ``new`` already
        has is merged: the higher weight, the earliest ``created_at``, the latest ``updated_at``.
        ``max_edges_per_item`` caps ``new``'s outgoing edges afterwards (the merge may exceed it;
        other items' degrees cannot grow). Returns how many of ``old``'s edges were moved.
        """
        _check_cap(max_edges_per_item)
        problem = edge_problem((old, new, "rename", 0.0))
        if problem is not None:
            raise StoreRejected(problem.replace("edge src", "old id").replace("edge dst", "new id"))
        if old == new:
            return 0
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            return self._rename(cur, old, new, max_edges_per_item)

    # -- the write path's edges (inside the caller's transaction) --------------------------------------
    def apply_edge_records(self, cur: Any, records: Sequence[Sequence[Any]],
                           forgotten: Forgotten | None = None) -> None:
        """Journaled edge records ``(record_id, src, dst, type, weight, at)`` in journal order.

        Consecutive additions go to ``upsert_edges`` together; a removal (``dst`` and ``type``
        None) deletes every edge from or to ``src`` after the additions before it. An addition
        naming a forgotten id (either end) is left out: settled with its batch, never retried.
        Raises StoreRejected for an unacceptable record (the writer isolates it and dead-letters it).
        """
        run: list[tuple[Any, ...]] = []
        cap = self.graph_writes.max_edges_per_item
        f = forgotten if forgotten is not None else Forgotten()
        f.ask(r[i] for r in records if len(r) == 6 for i in (1, 2))
        for r in records:
            if len(r) != 6:
                raise StoreRejected(f"an edge record has 6 fields, found {len(r)}")
            if r[2] is None and r[3] is None:
                problem = edge_problem((r[1], "-", "-", 0.0))
                if problem is not None:
                    raise StoreRejected(problem)
                self.upsert_edges(cur, f.keep(run), cap)
                run = []
                self._remove(cur, r[1])
            else:
                run.append((r[1], r[2], r[3], r[4], r[5]))
        self.upsert_edges(cur, f.keep(run), cap)

    def turn_input_edges(self, cur: Any, turns: Sequence[Sequence[Any]], forgotten: Forgotten | None = None) -> None:
        """``turn -> input_event_id`` (``input``) for turn rows that name an input. A replay adds
        nothing new (same edge, same time). An input id no edge can hold, or a forgotten one, is
        skipped, never a reason to refuse the turn. (A turn is never forgotten: only its input is
        looked up.)"""
        gw = self.graph_writes
        if not (gw.enabled and gw.turn_edges):
            return
        rows = [(t[0], t[2], INPUT, 1.0, _finite(t[6], time.time())) for t in turns if t[2]]
        rows = [r for r in rows if edge_problem(r) is None]
        if forgotten is not None:
            rows = forgotten.keep(rows, ends=(1,))
        self.upsert_edges(cur, rows, gw.max_edges_per_item)

    def turn_output_edges(self, cur: Any, turn_ids: Sequence[str], forgotten: Forgotten | None = None) -> None:
        """After finishes were applied: each turn's ``output`` edge points at the output its stored
        (winning) finish names, or there is none. Reads what the finishes left, so the order in
        which finishes arrived cannot matter (the same rule as the turn row). A forgotten output
        gets no edge (a stored one the batch did not name is looked up here)."""
        gw = self.graph_writes
        if not (gw.enabled and gw.turn_edges) or not turn_ids:
            return
        wanted: dict[str, list[Wanted]] = {}
        for i in range(0, len(turn_ids), _CHUNK):
            chunk = list(turn_ids[i:i + _CHUNK])
            cur.execute(f"SELECT turn_id, final_output_obs_id, finished_at FROM turns WHERE turn_id IN "
                        f"({', '.join([self.param] * len(chunk))})", chunk)
            for turn_id, out, finished_at in cur.fetchall():
                ok = out and edge_problem((turn_id, out, OUTPUT, 1.0)) is None
                wanted[turn_id] = [(out, 1.0, _finite(finished_at, time.time()))] if ok else []
        self.replace_out_edges(cur, OUTPUT, wanted, forgotten)

    def replace_out_edges(self, cur: Any, kind: str, wanted: dict[str, list[Wanted]],
                          forgotten: Forgotten | None = None) -> None:
        """Make each source's outgoing ``kind`` edges exactly ``wanted[src]``: the others go, the
        missing ones are added (an edge already there keeps its weight and times: a re-sync or a
        replay changes nothing). One read per 500 sources; deletes only where something changed.
        A wanted edge to a forgotten id is not wanted (the sources are the caller's to check)."""
        if not wanted:
            return
        if forgotten is not None:
            forgotten.ask(w[0] for ws in wanted.values() for w in ws)  # every source's at once: one read
            if not forgotten.empty:
                wanted = {src: forgotten.keep(w, ends=(0,)) for src, w in wanted.items()}
        sources = sorted(wanted)
        have: dict[str, set[str]] = {}
        for i in range(0, len(sources), _CHUNK):
            chunk = sources[i:i + _CHUNK]
            cur.execute(f"SELECT src, dst FROM graph_edges WHERE type = {self.param} AND src IN "
                        f"({', '.join([self.param] * len(chunk))})", [kind, *chunk])
            for src, dst in cur.fetchall():
                have.setdefault(src, set()).add(dst)
        stale = [(src, dst, kind) for src in sources for dst in sorted(have.get(src, ()))
                 if dst not in {w[0] for w in wanted[src]}]
        if stale:
            p = self.param
            cur.executemany(f"DELETE FROM graph_edges WHERE src = {p} AND dst = {p} AND type = {p}", stale)
        add = [(src, dst, kind, weight, at) for src in sources for dst, weight, at in wanted[src]
               if dst not in have.get(src, ())]
        self.upsert_edges(cur, add, self.graph_writes.max_edges_per_item)

    # -- forgotten ends (decay's tombstones, read inside the caller's transaction) ------------------------
    def tombstones_at(self, cur: Any, ids: Sequence[str]) -> dict[Tomb, str]:
        """``(kind, item_id) -> digest`` of the tombstones of ``ids`` (any kind): one read of the
        ``item_id`` index per 500 ids, nothing when ``ids`` is empty."""
        found: dict[Tomb, str] = {}
        for chunk in chunks(list(dict.fromkeys(ids))):
            cur.execute(f"SELECT kind, item_id, digest FROM tombstones WHERE item_id IN "
                        f"({', '.join([self.param] * len(chunk))})", list(chunk))
            found.update(((r[0], r[1]), r[2]) for r in cur.fetchall())
        return found

    def live_notes(self, cur: Any, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` have a knowledge row (within the caller's transaction)."""
        q = self.quote("key")  # type: ignore[attr-defined]
        found: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(keys))):
            cur.execute(f"SELECT {q} FROM knowledge WHERE {q} IN ({', '.join([self.param] * len(chunk))})",
                        list(chunk))
            found.update(r[0] for r in cur.fetchall())
        return found

    def forgotten(self, cur: Any, tombs: Collection[Tomb], live: Iterable[str] = ()) -> set[Tomb]:
        """``forgotten_of(tombs)``, the notes' liveness read only for tombstoned keys not in ``live``
        (notes the caller knows it holds); usually there is no such key and no read."""
        live = set(live)
        unknown = [i for k, i in tombs if k == KIND_NOTE and i not in live]
        return forgotten_of(tombs, live | (self.live_notes(cur, unknown) if unknown else set()))

    def note_tombstones(self, cur: Any, digests: Mapping[str, str],
                        targets: Sequence[str]) -> tuple[set[str], Forgotten]:
        """For a vault upsert of notes (key -> digest) linking to ``targets``, in one read: the notes
        that stay out (``forgotten_notes``), and the forgotten ids among keys and targets, where the
        notes written count as live (see ``forgotten_of``)."""
        tombs = self.tombstones_at(cur, [*digests, *targets])
        if not tombs:
            return set(), self.forgotten_view(cur, asked=[*digests, *targets])
        skip = forgotten_notes(digests, {i: d for (k, i), d in tombs.items() if k == KIND_NOTE})
        gone = self.forgotten(cur, list(tombs), [k for k in digests if k not in skip])
        return skip, self.forgotten_view(cur, asked=[*digests, *targets], gone=gone)

    def forgotten_view(self, cur: Any, *, asked: Iterable[str] = (), gone: Iterable[Tomb] = ()) -> Forgotten:
        """A memo of forgotten ids for one transaction (see ``Forgotten``), optionally seeded with
        ids already looked up (``asked``) and what was found forgotten among them (``gone``)."""
        return Forgotten(lambda ids: self.forgotten(cur, list(self.tombstones_at(cur, ids))), asked=asked, gone=gone)

    def _remove(self, cur: Any, item_id: str) -> int:
        p = self.param
        cur.execute(f"DELETE FROM graph_edges WHERE src = {p}", (item_id,))
        removed = max(0, int(cur.rowcount))
        cur.execute(f"DELETE FROM graph_edges WHERE dst = {p}", (item_id,))  # a self-loop is gone already
        return removed + max(0, int(cur.rowcount))

    def _rename(self, cur: Any, old: str, new: str, max_edges_per_item: int | None) -> int:
        p = self.param
        cur.execute(self.graph_sql.rename, (old, new, old, new, old, old))
        cur.execute(f"DELETE FROM graph_edges WHERE src = {p} OR dst = {p}", (old, old))
        moved = max(0, int(cur.rowcount))
        if max_edges_per_item is not None:
            self._evict(cur, [new], max_edges_per_item)
        return moved

    # -- reads ---------------------------------------------------------------------------------------
    def _type_filter(self, types: Sequence[str] | None, alias: str = "") -> tuple[str, list[str]]:
        if types is None:
            return "", []
        if isinstance(types, str):
            raise ValueError(f"types: expected a sequence of edge types, found the string {types!r}")
        wanted = list(dict.fromkeys(types))
        if not wanted:  # no type allowed: nothing can match (and "IN ()" is not SQL)
            return " AND 1 = 0", []
        return f" AND {alias}type IN ({', '.join([self.param] * len(wanted))})", wanted

    def edges(self, item_id: str, direction: str = "out", types: Sequence[str] | None = None) -> list[EdgeRow]:
        """Edges of ``item_id``: ``out`` (from it), ``in`` (to it) or ``both`` (a self-loop once),
        optionally only of ``types``; highest weight first, then by ``src, dst, type``."""
        _check_direction(direction)
        p = self.param
        tf, targs = self._type_filter(types)
        parts: list[str] = []
        args: list[Any] = []
        if direction in ("out", "both"):
            parts.append(f"SELECT {EDGE_COLS} FROM graph_edges WHERE src = {p}{tf}")
            args += [item_id, *targs]
        if direction in ("in", "both"):
            loop = f" AND src <> {p}" if direction == "both" else ""
            parts.append(f"SELECT {EDGE_COLS} FROM graph_edges WHERE dst = {p}{loop}{tf}")
            args += [item_id, *([item_id] if loop else []), *targs]
        sql = " UNION ALL ".join(parts) + " ORDER BY weight DESC, src, dst, type"
        return [tuple(r) for r in self._fetch(sql, tuple(args))]  # type: ignore[attr-defined, misc]

    def related_sql(self, depth: int, types: Sequence[str] | None, limit: int,
                    direction: str = "both") -> tuple[str, list[Any]]:
        """The walk as one statement and its parameters without the start id (which goes first
        and last): ``(sql, args)``; execute with ``[item_id, *args, item_id]``."""
        _check_direction(direction)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth: expected a positive integer, found {depth!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit: expected a positive integer, found {limit!r}")
        p = self.param
        tf, targs = self._type_filter(types, "e.")
        steps: list[str] = []
        args: list[Any] = []
        # One recursive SELECT per direction (both allowed in one CTE since SQLite 3.34 and in
        # MariaDB): each joins on an index, where one join on ``src = node OR dst = node`` would not.
        if direction in ("out", "both"):
            steps.append(f"SELECT e.dst, w.d + 1 FROM walk w JOIN graph_edges e ON e.src = w.node WHERE w.d < {p}{tf}")
            args += [depth, *targs]
        if direction in ("in", "both"):
            steps.append(f"SELECT e.src, w.d + 1 FROM walk w JOIN graph_edges e ON e.dst = w.node WHERE w.d < {p}{tf}")
            args += [depth, *targs]
        sql = (f"WITH RECURSIVE walk(node, d) AS (SELECT {self.graph_sql.start}, 0 UNION {' UNION '.join(steps)}) "
               f"SELECT node, MIN(d) AS dist FROM walk WHERE node <> {p} GROUP BY node ORDER BY dist, node "
               f"LIMIT {int(limit)}")
        return sql, args

    def related(self, item_id: str, depth: int = 1, types: Sequence[str] | None = None, limit: int = 100,
                direction: str = "both") -> list[tuple[str, int]]:
        """Items within ``depth`` hops of ``item_id``, nearest first, ties by id; the item itself
        is never in the answer (not even through a cycle or a self-loop). One statement.

        ``direction`` ``both`` (the default, see the module docstring), ``out`` or ``in``;
        ``types`` restricts every hop to those edge types.
        """
        sql, args = self.related_sql(depth, types, limit, direction)
        rows = self._fetch(sql, (item_id, *args, item_id))  # type: ignore[attr-defined]
        return [(r[0], int(r[1])) for r in rows]

    def edge_count(self) -> int:
        """Number of edges. (Not ``count``: ``SqlStore.count(table)`` has that name.)"""
        return int(self._fetch("SELECT COUNT(*) FROM graph_edges", ())[0][0])  # type: ignore[attr-defined]


__all__ = ["DIRECTIONS", "EDGE_COLS", "INPUT", "LINKS_TO", "MAX_ID", "MAX_TYPE", "MYSQL", "OUTPUT", "SQLITE",
           "EdgeRow", "Forgotten", "GraphSql", "GraphStatements", "GraphWrites", "Tomb", "Wanted", "batch_ids",
           "edge_problem", "forgotten_notes", "forgotten_of"]
