"""The recall index's storage: the outbox, the indexed items, their version, keyword search.

A mixin of :class:`~memory.store.SqlStore`; the dialects supply the two statements that differ
(the outbox upsert and the keyword query). The guarantees, which the indexer and the readers in
``memory.index`` build on:

* **Nothing committed is missed.** ``queue_for_index`` runs inside the transaction that writes
  an event or a note, so a change and its outbox row commit together; ``apply_index`` deletes an
  outbox row in the transaction that indexes the change, and only if it was not queued again
  meanwhile (``gen``), so a change made while it was being indexed is indexed again.
* **One change to the index at a time, in ``doc_id`` order.** ``apply_index`` first bumps the
  ``version`` row: its row lock (MySQL) or the write lock (SQLite) serializes indexers, so doc_ids
  commit in increasing order. An item is never updated in place: it is deleted and inserted with
  a new doc_id. A reader that has seen ``version`` v and every doc_id up to m therefore catches up
  with ``doc_id > m``, plus a full id comparison when the count says something was removed.
* **No duplicates.** ``(kind, item_id)`` is unique; re-indexing an item replaces its row.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ._base import Row

KIND_EVENT, KIND_NOTE = "event", "knowledge"
_CHUNK = 500  # ids per IN (...) list: far below every backend's parameter limit


@dataclasses.dataclass(frozen=True)
class IndexRow:
    """One item as the index stores it."""

    kind: str
    item_id: str
    session_key: str | None
    ts: float | None
    title: str | None
    digest: str
    terms: str
    embedder: str | None
    dim: int | None
    vector: bytes | None


@dataclasses.dataclass(frozen=True)
class IndexedMeta:
    doc_id: int
    digest: str
    embedder: str | None


@dataclasses.dataclass(frozen=True)
class IndexCounts:
    items: int
    outbox: int
    oldest_queued_at: float | None
    by_embedder: dict[str | None, int]
    version: int


def chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class RecallSql:
    """Mixed into ``SqlStore``; uses its ``_errors``, ``_raw_write``, ``_fetch``, ``param``."""

    #: Whether writes queue index work (off when recall is disabled, so the outbox never grows).
    recall_outbox_enabled: bool = True
    param: str

    # -- dialect hooks -------------------------------------------------------------------------
    def outbox_upsert_sql(self) -> str:
        raise NotImplementedError

    def keyword_sql(self, where: str, limit: int) -> tuple[str, int]:
        """The keyword query (its MATCH parameter bound ``n`` times first) and ``n``."""
        raise NotImplementedError

    # -- writers' side ---------------------------------------------------------------------------
    def queue_for_index(self, cur: Any, kind: str, ids: Sequence[str], now: float | None = None) -> None:
        """Within the caller's transaction: mark items as changed (inserted, edited or deleted)."""
        if self.recall_outbox_enabled and ids:
            t = time.time() if now is None else now
            # Every value a parameter (gen starts at 1): PyMySQL turns an executemany into one
            # multi-row INSERT only then; a literal in VALUES made it a round trip per row.
            cur.executemany(self.outbox_upsert_sql(), [(kind, i, 1, t) for i in dict.fromkeys(ids)])

    def enqueue_for_index(self, kind: str, ids: Sequence[str]) -> None:
        """Queue items in a transaction of their own (the reindex tool, forget/restore)."""
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            saved, self.recall_outbox_enabled = self.recall_outbox_enabled, True
            try:
                self.queue_for_index(cur, kind, list(ids))
            finally:
                self.recall_outbox_enabled = saved

    # -- the indexer ------------------------------------------------------------------------------
    def outbox_batch(self, limit: int) -> list[tuple[str, str, int]]:
        """Up to ``limit`` queued changes ``(kind, item_id, gen)``, half from each kind when both
        wait (a stream of events never starves notes), in key order (events: oldest first).

        The primary key serves both reads: no index on ``queued_at`` to maintain on every write.
        """
        out: list[tuple[str, str, int]] = []
        for kind, share in ((KIND_NOTE, max(1, limit // 2)), (KIND_EVENT, limit)):
            rows = self._fetch(f"SELECT kind, item_id, gen FROM recall_outbox WHERE kind = '{kind}' "  # type: ignore[attr-defined]
                               f"ORDER BY item_id LIMIT {int(min(share, limit - len(out)))}", ())
            out += [(r[0], r[1], int(r[2])) for r in rows]
        return out

    def _in(self, sql: str, ids: Sequence[str]) -> list[Row]:
        out: list[Row] = []
        for chunk in chunks(list(dict.fromkeys(ids))):
            marks = ", ".join([self.param] * len(chunk))
            out += self._fetch(sql.format(marks=marks), tuple(chunk))  # type: ignore[attr-defined]
        return out

    def event_sources(self, ids: Sequence[str]) -> dict[str, tuple[str, float, str]]:
        """event_id -> (session_key, ts, obs) of the events that exist."""
        rows = self._in("SELECT event_id, session_key, ts, obs FROM events WHERE event_id IN ({marks})", ids)
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def note_sources(self, keys: Sequence[str]) -> dict[str, tuple[str, str, str | None, str | None]]:
        """key -> (title, content, tags JSON, headings JSON) of the knowledge notes that exist."""
        q = self.quote("key")  # type: ignore[attr-defined]
        rows = self._in(f"SELECT {q}, title, content, tags, headings FROM knowledge WHERE {q} IN ({{marks}})", keys)
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def indexed_meta(self, kind: str, ids: Sequence[str]) -> dict[str, IndexedMeta]:
        rows = self._in(f"SELECT item_id, doc_id, digest, embedder FROM recall_items WHERE kind = '{kind}' "
                        "AND item_id IN ({marks})", ids)
        return {r[0]: IndexedMeta(int(r[1]), r[2], r[3]) for r in rows}

    def apply_index(self, rows: Sequence[IndexRow], remove: Sequence[tuple[str, str]],
                    done: Sequence[tuple[str, str, int]], now: float | None = None) -> int:
        """One transaction: replace ``rows``, delete ``remove``, then clear the outbox entries in
        ``done`` that were not queued again since they were read. Returns the new version."""
        p = self.param
        t = time.time() if now is None else now
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            # First statement: the version row's lock serializes indexers (see the module docstring).
            cur.execute("UPDATE recall_state SET value = value + 1 WHERE name = 'version'")
            gone = [(r.kind, r.item_id) for r in rows] + list(remove)
            if gone:
                cur.executemany(f"DELETE FROM recall_items WHERE kind = {p} AND item_id = {p}", gone)
            if rows:
                cur.executemany(
                    "INSERT INTO recall_items (kind, item_id, session_key, ts, title, digest, terms, embedder, dim, "
                    f"vector, indexed_at) VALUES ({', '.join([p] * 11)})",
                    [(r.kind, r.item_id, r.session_key, r.ts, r.title, r.digest, r.terms, r.embedder, r.dim,
                      r.vector, t) for r in rows])
            if done:
                cur.executemany(f"DELETE FROM recall_outbox WHERE kind = {p} AND item_id = {p} AND gen = {p}",
                                list(done))
            if remove:
                # Readers compare this counter, not a COUNT(*) over the whole table, to notice removals.
                cur.execute("UPDATE recall_state SET value = value + 1 WHERE name = 'removals'")
            cur.execute("SELECT value FROM recall_state WHERE name = 'version'")
            return int(cur.fetchone()[0])

    def clear_outbox(self, done: Sequence[tuple[str, str, int]]) -> None:
        """Drop outbox entries whose items need no change (same digest and embedder)."""
        if done:
            p = self.param
            with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
                cur.executemany(f"DELETE FROM recall_outbox WHERE kind = {p} AND item_id = {p} AND gen = {p}",
                                list(done))

    # -- readers ----------------------------------------------------------------------------------
    def index_version(self) -> int:
        rows = self._fetch("SELECT value FROM recall_state WHERE name = 'version'", ())  # type: ignore[attr-defined]
        return int(rows[0][0]) if rows else 0

    def index_versions(self) -> tuple[int, int]:
        """(``version``, ``removals``) in one read: what a mirror checks before any other query."""
        rows = dict(self._fetch(  # type: ignore[attr-defined]
            "SELECT name, value FROM recall_state WHERE name IN ('version', 'removals')", ()))
        return int(rows.get("version", 0)), int(rows.get("removals", 0))

    def index_vectors(self, embedder: str, after_doc_id: int, limit: int) -> list[Row]:
        """``(doc_id, kind, item_id, session_key, ts, vector)`` made by ``embedder``, by doc_id."""
        p = self.param
        return self._fetch(  # type: ignore[attr-defined]
            f"SELECT doc_id, kind, item_id, session_key, ts, vector FROM recall_items WHERE embedder = {p} "
            f"AND doc_id > {p} AND vector IS NOT NULL ORDER BY doc_id LIMIT {int(limit)}", (embedder, int(after_doc_id)))

    def index_doc_ids(self, embedder: str) -> set[int]:
        """doc_ids of the rows ``index_vectors`` returns (all of them)."""
        rows = self._fetch(f"SELECT doc_id FROM recall_items WHERE embedder = {self.param} "  # type: ignore[attr-defined]
                           "AND vector IS NOT NULL", (embedder,))
        return {int(r[0]) for r in rows}

    def index_counts(self) -> IndexCounts:
        by: dict[str | None, int] = {r[0]: int(r[1]) for r in self._fetch(  # type: ignore[attr-defined]
            "SELECT embedder, COUNT(*) FROM recall_items GROUP BY embedder", ())}
        ob = self._fetch("SELECT COUNT(*), MIN(queued_at) FROM recall_outbox", ())  # type: ignore[attr-defined]
        return IndexCounts(sum(by.values()), int(ob[0][0]), ob[0][1], by, self.index_version())

    def keyword_search(self, match: str, limit: int, *, kinds: Sequence[str] | None = None,
                       session_key: str | None = None, since: float | None = None,
                       until: float | None = None) -> list[tuple[str, str, float | None]]:
        """Best keyword matches first: ``(kind, item_id, ts)``. ``match`` is the dialect's query string
        (``KeywordQuery.fts5`` / ``.boolean``); filters as in ``VectorFilter``."""
        p = self.param
        where, args = "", []
        if kinds is not None:
            where += f" AND i.kind IN ({', '.join([p] * len(kinds))})"
            args += list(kinds)
        if session_key is not None:
            where += f" AND (i.session_key = {p} OR i.session_key IS NULL)"
            args.append(session_key)
        if since is not None:
            where += f" AND i.ts >= {p}"
            args.append(since)
        if until is not None:
            where += f" AND i.ts <= {p}"
            args.append(until)
        sql, n = self.keyword_sql(where, int(limit))
        return [(r[0], r[1], r[2]) for r in self._fetch(sql, tuple([match] * n + args))]  # type: ignore[attr-defined]

    def fresh_items(self, limit: int) -> tuple[list[Row], list[Row]]:
        """Committed but not yet indexed, newest first: events ``(event_id, session_key, ts, obs)``
        and notes ``(key, title, content, tags, headings)`` — recall scores them in-process."""
        q = self.quote("key")  # type: ignore[attr-defined]
        n = int(limit)
        events = self._fetch(  # type: ignore[attr-defined]
            "SELECT e.event_id, e.session_key, e.ts, e.obs FROM recall_outbox o JOIN events e "
            f"ON e.event_id = o.item_id WHERE o.kind = 'event' ORDER BY o.item_id DESC LIMIT {n}", ())
        notes = self._fetch(  # type: ignore[attr-defined]
            f"SELECT k.{q}, k.title, k.content, k.tags, k.headings FROM recall_outbox o JOIN knowledge k "
            f"ON k.{q} = o.item_id WHERE o.kind = 'knowledge' ORDER BY o.item_id DESC LIMIT {n}", ())
        return events, notes

    def queued_removals(self, limit: int) -> list[tuple[str, str]]:
        """Outbox entries whose source is gone (a deleted note, a forgotten event): recall must
        not answer with them even before the indexer removes them."""
        q = self.quote("key")  # type: ignore[attr-defined]
        rows = self._fetch(  # type: ignore[attr-defined]
            "SELECT o.kind, o.item_id FROM recall_outbox o LEFT JOIN events e ON o.kind = 'event' AND "
            f"e.event_id = o.item_id LEFT JOIN knowledge k ON o.kind = 'knowledge' AND k.{q} = o.item_id "
            f"WHERE e.event_id IS NULL AND k.{q} IS NULL LIMIT {int(limit)}", ())
        return [(r[0], r[1]) for r in rows]

    # -- the reindex tool ---------------------------------------------------------------------------
    def source_page(self, kind: str, after: str, limit: int) -> list[str]:
        """Ids of events (or note keys) after ``after`` in id order: the reindex tool's keyset scan."""
        q = self.quote("key")  # type: ignore[attr-defined]
        table, col = ("events", "event_id") if kind == KIND_EVENT else ("knowledge", q)
        rows = self._fetch(f"SELECT {col} FROM {table} WHERE {col} > {self.param} ORDER BY {col} "  # type: ignore[attr-defined]
                           f"LIMIT {int(limit)}", (after,))
        return [r[0] for r in rows]

    def orphan_items(self, kind: str, limit: int) -> list[str]:
        """Indexed items whose source no longer exists."""
        q = self.quote("key")  # type: ignore[attr-defined]
        table, col = ("events", "event_id") if kind == KIND_EVENT else ("knowledge", q)
        rows = self._fetch(  # type: ignore[attr-defined]
            f"SELECT i.item_id FROM recall_items i LEFT JOIN {table} s ON s.{col} = i.item_id "
            f"WHERE i.kind = '{kind}' AND s.{col} IS NULL LIMIT {int(limit)}", ())
        return [r[0] for r in rows]

    def get_state(self, name: str) -> tuple[int, str | None] | None:
        rows = self._fetch(f"SELECT value, note FROM recall_state WHERE name = {self.param}", (name,))  # type: ignore[attr-defined]
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def set_state(self, name: str, value: int, note: str | None = None) -> None:
        p = self.param
        with self._errors(), self._raw_write() as cur:  # type: ignore[attr-defined]
            cur.execute(f"DELETE FROM recall_state WHERE name = {p}", (name,))
            cur.execute(f"INSERT INTO recall_state (name, value, note) VALUES ({p}, {p}, {p})", (name, value, note))
