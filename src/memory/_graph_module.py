"""``service.graph``: typed, weighted edges between items, written through the journal.

Items are event ids, turn ids and knowledge keys. The guarantees:

* **add_edge / remove_item are appends.** They coerce, journal one ``EDGE`` record and return:
  never raise, never wait on the database, durable once they return (``kill -9`` included), and
  written after an outage like every other record. The store applies edge records in journal
  order, in the writer's transaction (``GraphSql.apply_edge_records``). A record the database
  cannot take (an empty id, a NaN weight) dead-letters with its reason, like a bad event.
* **Re-adding updates, never duplicates**; beyond ``graph.max_edges_per_item`` outgoing edges the
  lowest weight (the oldest on a tie) is evicted when the edge is written (see ``memory.store._graph``).
* **edges() reads your writes**: edge records still pending in this process's window are applied
  on top of the database's answer (additions, weight updates, removals), so an edge is visible the
  moment ``add_edge`` returns. The cap is applied when the edge is written, not in this merge, and
  ``related()`` / ``count()`` answer from the database only (a walk over pending records would
  need the walk twice).
* **Reads never raise** (except ``ValueError`` for a ``direction`` other than out/in/both, a
  string as ``types``, or a ``depth``/``limit`` that is not a positive integer). With the database
  down they answer ``[]`` / ``0`` (edges: the pending ones), counted in health.
* **enabled: false costs nothing**: nothing is journaled or walked, every read answers empty.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._graph_config import GraphConfig
from ._errors import StoreError
from ._ids import IdGenerator
from ._records import EDGE, Edge, edge_from_row, to_edge_type, to_key, to_weight
from .store import SqlStore
from .store._graph import DIRECTIONS, GraphWrites

log = logging.getLogger("memory.graph")
COUNT_TTL_S = 30.0  # health's edge count is a COUNT(*): at most one per this many seconds


@dataclasses.dataclass
class GraphStats:
    """Read failures (the write path's are the queue's: retries and dead letters)."""

    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None


def merge_pending(rows: Iterable[Edge], records: Iterable[Sequence[Any]], item_id: str, direction: str,
                  types: Sequence[str] | None) -> list[Edge]:
    """The database's edges of ``item_id`` with pending edge records applied in journal order:
    a pure function. Highest weight first, then by ``src, dst, type`` (as the store orders)."""
    wanted = None if types is None else set(types)
    out = {(e.src, e.dst, e.type): e for e in rows}
    for r in records:
        _, src, dst, kind, weight, at = r
        if dst is None and kind is None:  # a removal of every edge from or to src
            out = {} if src == item_id else {k: e for k, e in out.items() if src not in (e.src, e.dst)}
            continue
        touches = (direction in ("out", "both") and src == item_id) or (direction in ("in", "both") and dst == item_id)
        if not touches or (wanted is not None and kind not in wanted):
            continue
        if not (isinstance(weight, float) and math.isfinite(weight)):
            continue  # the store refuses it (a dead letter): never show it
        held = out.get((src, dst, kind))
        at = float(at)
        if held is None:
            out[(src, dst, kind)] = Edge(src, dst, kind, weight, at, at)
        else:
            newer = at >= held.updated_at
            out[(src, dst, kind)] = Edge(src, dst, kind, weight if newer else held.weight,
                                         min(held.created_at, at), max(held.updated_at, at))
    return sorted(out.values(), key=lambda e: (-e.weight, e.src, e.dst, e.type))


class GraphModule:
    """What ``service.graph`` is (see the module docstring). Built by the service with its store,
    queue and id generator; a forked child builds its own."""

    def __init__(self, config: GraphConfig, store: SqlStore, *, submit: Callable[[int, tuple[Any, ...]], None],
                 pending: Callable[[], Iterable[Any]], ids: IdGenerator, online: Callable[[], bool],
                 warn: Callable[[str, str], None] | None = None) -> None:
        self.config, self.store = config, store
        self.enabled = config.enabled
        self._submit, self._pending, self._ids, self._online = submit, pending, ids, online
        self._warn = warn or (lambda key, msg: log.warning("%s", msg))
        self.stats = GraphStats()
        self._lock = threading.Lock()
        self._count: tuple[float, int] | None = None
        # The store writes the automatic edges (turns, note links) inside its own transactions.
        store.graph_writes = GraphWrites(enabled=config.enabled, max_edges_per_item=config.max_edges_per_item,
                                         turn_edges=config.turn_edges, link_edges=config.link_edges)

    # -- writes: journaled, never raise -----------------------------------------------------------
    def add_edge(self, src: Any, dst: Any, type: Any = "related_to", weight: Any = 1.0) -> Edge:  # noqa: A002
        """Add (or re-weigh) the edge ``src -[type]-> dst``. Returns at once with the edge as it
        will be stored; never raises. Ids longer than 255 characters (types: 32) keep a prefix
        and a hash of the whole; a weight that is no finite number makes the record dead-letter."""
        try:
            at = time.time()
            edge = Edge(to_key(src), to_key(dst), to_edge_type(type), to_weight(weight), at, at)
            if self.enabled:
                self._submit(EDGE, (self._ids.new_id(), edge.src, edge.dst, edge.type, edge.weight, at))
            return edge
        except Exception as exc:  # noqa: BLE001 - the caller's flow must never see our failure
            self._warn("graph-write", f"graph.add_edge failed internally: {exc}")
            return Edge("", "", "", math.nan, 0.0, 0.0)

    def remove_item(self, item_id: Any) -> None:
        """Remove every edge from or to ``item_id`` (journaled like ``add_edge``; edges added
        before this call are removed too, later ones are kept). Never raises."""
        try:
            if self.enabled:
                self._submit(EDGE, (self._ids.new_id(), to_key(item_id), None, None, 0.0, time.time()))
        except Exception as exc:  # noqa: BLE001
            self._warn("graph-write", f"graph.remove_item failed internally: {exc}")

    # -- reads ------------------------------------------------------------------------------------
    def _read(self, fn: Callable[[], Any], default: Any) -> Any:
        if not self._online():
            return default  # a known outage: no connect timeout per read
        try:
            value = fn()
        except StoreError as exc:
            with self._lock:
                self.stats.errors += 1
                self.stats.last_error, self.stats.last_error_at = str(exc), time.time()
            self._warn("graph-read", f"graph read failed, answering without the database: {exc}")
            return default
        self.stats.last_ok_at = time.time()
        return value

    def edges(self, item_id: Any, direction: str = "out", types: Sequence[str] | None = None) -> list[Edge]:
        """Edges of ``item_id``: ``out`` (from it), ``in`` (to it) or ``both``; only ``types`` if
        given. Highest weight first. Includes edges still pending in this process."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {', '.join(DIRECTIONS)}, found {direction!r}")
        if isinstance(types, str):
            raise ValueError(f"types: expected a sequence of edge types, found the string {types!r}")
        if not self.enabled:
            return []
        item = to_key(item_id)  # as add_edge stored it (a long id: its prefix and hash)
        wanted = None if types is None else [to_edge_type(t) for t in types]
        # The pending window first, then the database: a record committed in between is in the
        # second answer, and applying it again (an upsert) changes nothing.
        records = [it.row for it in self._pending() if it.kind == EDGE]
        rows = self._read(lambda: self.store.edges(item, direction, wanted), [])
        return merge_pending((edge_from_row(r) for r in rows), records, item, direction, wanted)

    def related(self, item_id: Any, depth: int = 1, types: Sequence[str] | None = None,
                limit: int = 100) -> list[tuple[str, int]]:
        """Items within ``depth`` hops of ``item_id`` following edges either way, as ``(id,
        distance)``, nearest first (ties by id), at most ``limit``; never the item itself.
        Committed edges only."""
        for name, value in (("depth", depth), ("limit", limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, found {value!r}")
        if isinstance(types, str):
            raise ValueError(f"types: expected a sequence of edge types, found the string {types!r}")
        if not self.enabled:
            return []
        item = to_key(item_id)  # as add_edge stored it (a long id: its prefix and hash)
        wanted = None if types is None else [to_edge_type(t) for t in types]
        return list(self._read(lambda: self.store.related(item, depth, wanted, limit), []))

    def count(self) -> int:
        """Number of committed edges (0 when disabled or the database is unreachable)."""
        if not self.enabled:
            return 0
        n = int(self._read(self.store.edge_count, -1))
        if n >= 0:
            self._count = (time.monotonic(), n)
        return max(0, n)

    def health(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """(the ``graph`` section of ``health()``, problems in plain words). The edge count is
        read at most once per ``COUNT_TTL_S`` (a COUNT(*) over a large table is not free)."""
        if not self.enabled:
            return {"enabled": False}, ()
        cached = self._count
        if cached is None or time.monotonic() - cached[0] > COUNT_TTL_S:
            self.count()
            cached = self._count
        st = self.stats
        report = {"enabled": True, "edges": None if cached is None else cached[1],
                  "max_edges_per_item": self.config.max_edges_per_item, "errors": st.errors,
                  "last_error": st.last_error}
        failing = (st.last_error_at is not None and (st.last_ok_at is None or st.last_error_at > st.last_ok_at)
                   and st.errors >= 3 and self._online())
        return report, (f"graph reads keep failing: {st.last_error}",) if failing else ()

    # -- recall's boost ------------------------------------------------------------------------------
    def neighbours(self, item_ids: Sequence[str], depth: int, limit: int = 100) -> dict[str, list[tuple[str, int]]]:
        """For recall's boost: ``related`` of each id (committed edges). Raises StoreError (recall
        answers without the boost then)."""
        if not self.enabled:
            return {}
        return {i: self.store.related(i, depth, None, limit) for i in dict.fromkeys(item_ids)}


__all__ = ["GraphModule", "GraphStats", "merge_pending"]
