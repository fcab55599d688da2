"""Keyword tables on the real backends, laid out the way the recall wiring will lay them out.

One indexed column, ``terms``, holds ``document_terms(head, body)``: a note's head (title, tags,
headings) three times, then its body; an event's text as the body. Beside it, the metadata the
filters need. SQLite: one FTS5 table (``prefix='5'`` indexes the 5-character prefixes that a
one-character CJK query searches by), ranked by ``bm25``. MariaDB/MySQL: one InnoDB
``FULLTEXT`` index on an ASCII column (terms are ASCII), ranked by ``MATCH ... AGAINST`` in
boolean mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import create_engine, text

from memory.index._text import document_terms, keyword_query


class KeywordTable(Protocol):
    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None: ...

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None,
               require_all: bool = False) -> list[tuple[str, str]]: ...


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
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS recall_fts USING fts5(terms, kind UNINDEXED, "
                          "item_id UNINDEXED, session_key UNINDEXED, ts UNINDEXED, prefix='5')")

    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None:
        self.conn.execute("INSERT INTO recall_fts (terms, kind, item_id, session_key, ts) VALUES (?, ?, ?, ?, ?)",
                          (document_terms(head, body), kind, item_id, session_key, ts))
        self.conn.commit()

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None,
               require_all: bool = False) -> list[tuple[str, str]]:
        kq = keyword_query(query)
        if kq is None:
            return []
        where, args = _filters(kinds, session_key, since, until, "?")
        rows = self.conn.execute(
            f"SELECT kind, item_id FROM recall_fts WHERE recall_fts MATCH ?{where} "
            f"ORDER BY bm25(recall_fts), kind, item_id LIMIT ?", [kq.fts5(require_all), *args, k]).fetchall()
        return [(r[0], r[1]) for r in rows]


class MariaTable:
    def __init__(self, dsn: str) -> None:
        self.engine = create_engine(dsn)
        with self.engine.begin() as c:
            c.execute(text(
                "CREATE TABLE recall_terms (kind VARCHAR(16) NOT NULL, item_id VARCHAR(255) NOT NULL, "
                "session_key VARCHAR(255) NULL, ts DOUBLE NULL, "
                "terms LONGTEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL, PRIMARY KEY (kind, item_id), "
                "FULLTEXT KEY ft_terms (terms)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"))

    def add(self, kind: str, item_id: str, head: str, body: str, session_key: str | None = None,
            ts: float | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(text("INSERT INTO recall_terms VALUES (:k, :i, :s, :t, :terms)"),
                      {"k": kind, "i": item_id, "s": session_key, "t": ts, "terms": document_terms(head, body)})

    def search(self, query: object, k: int, *, kinds: Iterable[str] | None = None, session_key: str | None = None,
               since: float | None = None, until: float | None = None,
               require_all: bool = False) -> list[tuple[str, str]]:
        kq = keyword_query(query)
        if kq is None:
            return []
        q = kq.boolean(require_all)
        where, args = _filters(kinds, session_key, since, until, "%s")
        sql = (f"SELECT kind, item_id, MATCH(terms) AGAINST(%s IN BOOLEAN MODE) AS rel FROM recall_terms "
               f"WHERE MATCH(terms) AGAINST(%s IN BOOLEAN MODE){where} ORDER BY rel DESC, kind, item_id LIMIT %s")
        with self.engine.connect() as c:
            rows = c.exec_driver_sql(sql, (q, q, *args, k)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()
