"""Keyword tables on the real backends, built the way the recall wiring will build them.

Each item has a ``head`` column (a note's title, tags and headings: weighted 3×) and a ``body``
column (a note's body, an event's text), both holding ``index_terms`` output, plus the metadata
the filters need. SQLite: one FTS5 table (``prefix='5'`` indexes the 5-character prefixes a
one-character CJK query searches by). MariaDB/MySQL: InnoDB ``FULLTEXT`` indexes on
``(head, body)`` for matching and on each column for weighting; the term columns are ASCII,
since terms are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import create_engine, text

from memory.index._text import index_terms, keyword_query

HEAD_WEIGHT = 3.0


class KeywordTable(Protocol):
    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None: ...

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None) -> list[tuple[str, str]]: ...


def _filters(kinds: Iterable[str] | None, session_key: str | None, since: float | None, until: float | None,
             ph: str) -> tuple[str, list[Any]]:
    sql, args = "", []
    if kinds is not None:
        kinds = sorted(kinds)
        sql += f" AND kind IN ({', '.join([ph] * len(kinds))})"
        args += kinds
    if session_key is not None:
        sql += f" AND (session_key = {ph} OR session_key IS NULL)"
        args.append(session_key)
    if since is not None:
        sql += f" AND ts >= {ph}"
        args.append(since)
    if until is not None:
        sql += f" AND ts <= {ph}"
        args.append(until)
    return sql, args


class Fts5Table:
    def __init__(self, path: str = ":memory:") -> None:
        self.conn = sqlite3.connect(path)
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS recall_fts USING fts5(head, body, kind UNINDEXED, "
                          "item_id UNINDEXED, session_key UNINDEXED, ts UNINDEXED, prefix='5')")

    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None:
        self.conn.execute("INSERT INTO recall_fts (head, body, kind, item_id, session_key, ts) VALUES (?, ?, ?, ?, ?, ?)",
                          (index_terms(head), index_terms(body), kind, item_id, session_key, ts))
        self.conn.commit()

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None) -> list[tuple[str, str]]:
        kq = keyword_query(query)
        if kq is None:
            return []
        where, args = _filters(kinds, session_key, since, until, "?")
        rows = self.conn.execute(
            f"SELECT kind, item_id FROM recall_fts WHERE recall_fts MATCH ?{where} "
            f"ORDER BY bm25(recall_fts, {HEAD_WEIGHT}, 1.0), kind, item_id LIMIT ?", [kq.fts5(), *args, k]).fetchall()
        return [(r[0], r[1]) for r in rows]


class MariaTable:
    def __init__(self, dsn: str) -> None:
        self.engine = create_engine(dsn)
        with self.engine.begin() as c:
            c.execute(text(
                "CREATE TABLE recall_docs (kind VARCHAR(16) NOT NULL, item_id VARCHAR(255) NOT NULL, "
                "session_key VARCHAR(255) NULL, ts DOUBLE NULL, "
                "head LONGTEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
                "body LONGTEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL, PRIMARY KEY (kind, item_id), "
                "FULLTEXT KEY ft_all (head, body), FULLTEXT KEY ft_head (head), FULLTEXT KEY ft_body (body)) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"))

    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(text("INSERT INTO recall_docs VALUES (:k, :i, :s, :t, :h, :b)"),
                      {"k": kind, "i": item_id, "s": session_key, "t": ts, "h": index_terms(head),
                       "b": index_terms(body)})

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None) -> list[tuple[str, str]]:
        kq = keyword_query(query)
        if kq is None:
            return []
        q = kq.boolean()
        where, args = _filters(kinds, session_key, since, until, "%s")
        sql = (f"SELECT kind, item_id, {HEAD_WEIGHT} * MATCH(head) AGAINST(%s IN BOOLEAN MODE) "
               f"+ MATCH(body) AGAINST(%s IN BOOLEAN MODE) AS rel FROM recall_docs "
               f"WHERE MATCH(head, body) AGAINST(%s IN BOOLEAN MODE){where} ORDER BY rel DESC, kind, item_id LIMIT %s")
        with self.engine.connect() as c:
            rows = c.exec_driver_sql(sql, (q, q, q, *args, k)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()
