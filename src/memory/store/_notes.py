"""The vault's synced copy in the database: rows of ``configs`` and ``knowledge`` notes.

A mixin of :class:`~memory.store.SqlStore` (it uses ``_errors``, ``_raw_write``, ``_fetch``,
``param`` and ``quote``; the dialects supply ``upsert_sql``). Each call is one transaction: a
note's row, its place in the recall outbox and its ``links_to`` edges change together, and a
forgotten note's content (decay's tombstone, same digest) stays out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._base import Row
from ._graph import LINKS_TO, Forgotten, edge_problem
from ._recall import KIND_NOTE


class NoteSql:
    # -- the vault's synced copy ------------------------------------------------------------------
    NOTE_COLS = {
        "configs": ("key", "path", "title", "content", "metadata_json", "digest", "mtime_ns", "updated_at"),
        "knowledge": ("key", "category", "path", "title", "content", "tags", "headings", "links", "metadata_json",
                      "digest", "mtime_ns", "updated_at"),
    }

    def upsert_sql(self, table: str) -> str:
        raise NotImplementedError

    def upsert_notes(self, table: str, rows: Sequence[Row],
                     links: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Insert or replace vault rows (``NOTE_COLS[table]`` order), all in one transaction.

        ``links``: knowledge key -> the knowledge keys its body links to now; in the same
        transaction each such note's ``links_to`` edges become exactly that set, less links to
        forgotten items (when the graph's ``link_edges`` are on). A row holding the very content
        of a forgotten note stays out, links and all (``forgotten_notes``): returns those keys.
        """
        if not rows:
            return []
        gw = self.graph_writes
        linked = table == "knowledge" and links is not None and gw.enabled and gw.link_edges
        with self._errors(), self._raw_write() as cur:
            skipped: set[str] = set()
            forgotten: Forgotten | None = None
            if table == "knowledge" and self.decay_writes.tombstones:
                digest = self.NOTE_COLS[table].index("digest")
                skipped, forgotten = self.note_tombstones(cur, {r[0]: r[digest] for r in rows}, [
                    t for ts in (links or {}).values() for t in ts] if linked else [])
            if rows := [r for r in rows if r[0] not in skipped]:
                cur.executemany(self.upsert_sql(table), rows)
            if table == "knowledge":
                self.queue_for_index(cur, KIND_NOTE, [r[0] for r in rows])
            if linked and links is not None:
                at = time.time()
                self.replace_out_edges(cur, LINKS_TO, {
                    key: [(dst, 1.0, at) for dst in dict.fromkeys(targets)
                          if dst != key and edge_problem((key, dst, LINKS_TO, 1.0)) is None]
                    for key, targets in links.items() if key not in skipped}, forgotten)
            return sorted(skipped)

    def delete_notes(self, table: str, keys: Sequence[str], *, forget_edges: bool = False,
                     renames: Sequence[tuple[str, str]] = ()) -> None:
        """Delete vault rows in one transaction. For knowledge notes, in that transaction:
        ``renames`` ``(old key, new key)`` first give a moved note's edges to its new key, then
        ``forget_edges`` removes every edge from or to a deleted key (a note the vault lost, not a
        rebuild of the rows)."""
        if not keys and not renames:
            return
        with self._errors(), self._raw_write() as cur:
            if table == "knowledge" and self.graph_writes.enabled:
                for old, new in renames:
                    if edge_problem((old, new, LINKS_TO, 1.0)) is None:
                        self._rename(cur, old, new, self.graph_writes.max_edges_per_item)
            if not keys:
                return
            cur.executemany(f"DELETE FROM {table} WHERE {self.quote('key')}={self.param}", [(k,) for k in keys])
            if table == "knowledge":
                self.queue_for_index(cur, KIND_NOTE, list(keys))
                if forget_edges and self.graph_writes.enabled:
                    for key in keys:
                        self._remove(cur, key)

    def note_digests(self, table: str) -> dict[str, tuple[str, str]]:
        """key -> (digest, path) of every row: what the database believes the vault holds."""
        rows = self._fetch(f"SELECT {self.quote('key')}, digest, path FROM {table}", ())
        return {r[0]: (r[1], r[2]) for r in rows}

    def get_note(self, table: str, key: str) -> dict[str, Any] | None:
        cols = self.NOTE_COLS[table]
        rows = self._fetch(f"SELECT {', '.join(self.quote(c) for c in cols)} FROM {table} "
                           f"WHERE {self.quote('key')}={self.param}", (key,))
        return dict(zip(cols, rows[0])) if rows else None

    SEARCH_COLS = ("key", "path", "title", "tags", "content")

    def search_knowledge(self, patterns: Sequence[tuple[str, str]], escape: str = "!") -> list[dict[str, Any]]:
        """Candidate rows (``SEARCH_COLS``) for a keyword search: for every ``(text, tags)`` pair,
        title or content ``LIKE text`` or tags ``LIKE tags`` (``escape`` escapes ``%``/``_``).

        A pre-filter only: the caller tests and ranks the candidates exactly (see
        ``memory.vault._search``), so there is deliberately no ORDER BY / LIMIT here — cutting
        before the exact ranking would drop the best matches.
        """
        if len(escape) != 1 or escape in "'\\%_":
            raise ValueError(f"unusable LIKE escape character {escape!r}")
        p = self.param
        like = f"LIKE {p} ESCAPE '{escape}'"
        where = " AND ".join(f"(title {like} OR content {like} OR tags {like})" for _ in patterns) or "1=1"
        params: list[str] = []
        for text_pattern, tags_pattern in patterns:
            params += [text_pattern, text_pattern, tags_pattern]
        cols = self.SEARCH_COLS
        rows = self._fetch(f"SELECT {', '.join(self.quote(c) for c in cols)} FROM knowledge WHERE {where}",
                           tuple(params))
        return [dict(zip(cols, r)) for r in rows]

