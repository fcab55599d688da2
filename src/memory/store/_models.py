"""SQLAlchemy 2.0 typed models: the schema at head.

Migrations in ``migrations/versions`` are the authority for what a database holds; these models
mirror head for typed queries and are checked against the migrations by the test suite.

Types per dialect: ids and keys are ``VARCHAR`` (binary collation on MySQL so keys compare
exactly); bodies are ``TEXT`` on SQLite and ``LONGTEXT`` on MySQL, so JSON and Markdown never
truncate at 64 KB; every MySQL table is ``utf8mb4`` so emoji and CJK round-trip. Timestamps are
epoch seconds in a ``DOUBLE`` (microsecond precision, no time-zone ambiguity, no per-row
formatting on the write path).
"""

from __future__ import annotations

from sqlalchemy import Double, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
BigInt = mysql.BIGINT().with_variant(Integer(), "sqlite")
#: Recall's keyword terms are ASCII by construction (``memory.index._text``): an ASCII column keeps
#: MySQL's FULLTEXT parser from splitting or case-folding them.
AsciiText = Text().with_variant(mysql.LONGTEXT(charset="ascii", collation="ascii_bin"), "mysql", "mariadb")

#: Objects a migration creates for one dialect only, outside the models: SQLite's FTS5 table (and
#: its shadow tables) and MySQL's FULLTEXT index. ``is_dialect_object`` tells comparisons to skip them.
DIALECT_OBJECTS = ("recall_fts", "ft_recall_terms")


def is_dialect_object(name: str | None) -> bool:
    return bool(name) and any(name == n or name.startswith(n + "_") for n in DIALECT_OBJECTS)  # type: ignore[union-attr]


def include_in_comparison(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """For ``alembic.autogenerate.compare_metadata``: skip the dialect-only objects."""
    return not is_dialect_object(name)


def Key(length: int = 255) -> String:  # noqa: N802 - reads like a type
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb")


TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_session", "session_key", "event_id"), TABLE_ARGS)

    event_id: Mapped[str] = mapped_column(Key(32), primary_key=True)
    ts: Mapped[float] = mapped_column(Double, nullable=False)
    session_key: Mapped[str] = mapped_column(Key(), nullable=False)
    obs: Mapped[str] = mapped_column(LongText, nullable=False)
    gate: Mapped[str | None] = mapped_column(LongText)
    meta: Mapped[str | None] = mapped_column(LongText)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_session", "session_key", "turn_id"),
        Index("ix_turns_input_event", "input_event_id"),
        TABLE_ARGS,
    )

    turn_id: Mapped[str] = mapped_column(Key(32), primary_key=True)
    session_key: Mapped[str] = mapped_column(Key(), nullable=False)
    input_event_id: Mapped[str | None] = mapped_column(Key())
    plan: Mapped[str | None] = mapped_column(LongText)
    meta: Mapped[str | None] = mapped_column(LongText)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(LongText)
    final_output_obs_id: Mapped[str | None] = mapped_column(Key())
    started_at: Mapped[float] = mapped_column(Double, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Double)


class ConfigDoc(Base):
    """A vault config document (``md/system.md``, ``md/users/<id>.md``, other named configs)."""

    __tablename__ = "configs"
    __table_args__ = (TABLE_ARGS,)

    key: Mapped[str] = mapped_column(Key(), primary_key=True)
    path: Mapped[str] = mapped_column(Key(1024), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(LongText, nullable=False)
    metadata_json: Mapped[str | None] = mapped_column(LongText)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    mtime_ns: Mapped[int] = mapped_column(mysql.BIGINT().with_variant(Integer(), "sqlite"), nullable=False)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)


class Knowledge(Base):
    """A knowledge note (``knowledge/<category>/<name>.md``)."""

    __tablename__ = "knowledge"
    __table_args__ = (Index("ix_knowledge_category", "category"), TABLE_ARGS)

    key: Mapped[str] = mapped_column(Key(), primary_key=True)
    category: Mapped[str] = mapped_column(Key(), nullable=False)
    path: Mapped[str] = mapped_column(Key(1024), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(LongText, nullable=False)
    tags: Mapped[str | None] = mapped_column(LongText)
    headings: Mapped[str | None] = mapped_column(LongText)
    links: Mapped[str | None] = mapped_column(LongText)
    metadata_json: Mapped[str | None] = mapped_column(LongText)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    mtime_ns: Mapped[int] = mapped_column(mysql.BIGINT().with_variant(Integer(), "sqlite"), nullable=False)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)


class RecallOutbox(Base):
    """A note or event changed and not indexed yet (written in the same transaction as the change)."""

    __tablename__ = "recall_outbox"
    __table_args__ = (TABLE_ARGS,)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    gen: Mapped[int] = mapped_column(BigInt, nullable=False)
    queued_at: Mapped[float] = mapped_column(Double, nullable=False)


class RecallItem(Base):
    """One indexed note or event: filters, digest, keyword terms, vector and its embedder."""

    __tablename__ = "recall_items"
    __table_args__ = (
        Index("ux_recall_items_item", "kind", "item_id", unique=True),
        Index("ix_recall_items_embedder", "embedder", "doc_id"),
        {**TABLE_ARGS, "sqlite_autoincrement": True},
    )

    doc_id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    item_id: Mapped[str] = mapped_column(Key(), nullable=False)
    session_key: Mapped[str | None] = mapped_column(Key())
    ts: Mapped[float | None] = mapped_column(Double)
    title: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    terms: Mapped[str] = mapped_column(AsciiText, nullable=False)
    embedder: Mapped[str | None] = mapped_column(String(64))
    dim: Mapped[int | None] = mapped_column(Integer)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    indexed_at: Mapped[float] = mapped_column(Double, nullable=False)


class RecallState(Base):
    """``version`` (bumped by every change to ``recall_items``) and the reindex checkpoint."""

    __tablename__ = "recall_state"
    __table_args__ = (TABLE_ARGS,)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInt, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)


class GraphEdge(Base):
    """A typed, weighted edge between two items (event ids, turn ids, knowledge keys).

    ``WITHOUT ROWID`` on SQLite (clustered on the key, as InnoDB is), so both secondary indexes
    cover a walk's hop; see migration 0004.
    """

    __tablename__ = "graph_edges"
    __table_args__ = (
        Index("ix_graph_edges_in", "dst", "type"),
        Index("ix_graph_edges_evict", "src", "weight", "created_at"),
        {**TABLE_ARGS, "sqlite_with_rowid": False},
    )

    src: Mapped[str] = mapped_column(Key(), primary_key=True)
    dst: Mapped[str] = mapped_column(Key(), primary_key=True)
    type: Mapped[str] = mapped_column(Key(32), primary_key=True)
    weight: Mapped[float] = mapped_column(Double, nullable=False)
    created_at: Mapped[float] = mapped_column(Double, nullable=False)
    updated_at: Mapped[float] = mapped_column(Double, nullable=False)


class ItemState(Base):
    """Decay's view of one note or event: its zone (0 core ... 4 cloud), since when, how often and
    when it was last recalled, whether it is pinned; see migration 0005 and ``memory.decay``."""

    __tablename__ = "item_state"
    __table_args__ = (Index("ix_item_state_decay", "pinned", "zone", "idle_since"), TABLE_ARGS)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    zone: Mapped[int] = mapped_column(Integer, nullable=False)
    zone_since: Mapped[float] = mapped_column(Double, nullable=False)
    idle_since: Mapped[float] = mapped_column(Double, nullable=False)  # max(zone_since, last_recalled_at)
    recall_count: Mapped[int] = mapped_column(BigInt, nullable=False)
    last_recalled_at: Mapped[float | None] = mapped_column(Double)
    pinned: Mapped[int] = mapped_column(Integer, nullable=False)
    declared_zone: Mapped[int | None] = mapped_column(Integer)  # the front matter's zone, last applied
    source_at: Mapped[float | None] = mapped_column(Double)  # the note's updated_at when last read


class Tombstone(Base):
    """A forgotten item: why, when, its content digest, and what ``restore`` needs to bring it back."""

    __tablename__ = "tombstones"
    __table_args__ = (
        Index("ix_tombstones_item", "item_id"),
        Index("ix_tombstones_file", "file_state"),
        TABLE_ARGS,
    )

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    item_id: Mapped[str] = mapped_column(Key(), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    forgotten_at: Mapped[float] = mapped_column(Double, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    zone: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(LongText, nullable=False)  # the deleted row as JSON
    trash_path: Mapped[str | None] = mapped_column(Key(1024))  # a note's file below the vault's trash
    file_state: Mapped[str | None] = mapped_column(String(16))  # pending (not moved yet) / trashed


class DecayLease(Base):
    """Who runs decay now (``holder`` until ``expires_at``, wall-clock seconds) and the last run."""

    __tablename__ = "decay_lease"
    __table_args__ = (TABLE_ARGS,)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[float] = mapped_column(Double, nullable=False)
    acquired_at: Mapped[float | None] = mapped_column(Double)
    last_run_at: Mapped[float | None] = mapped_column(Double)
    last_result: Mapped[str | None] = mapped_column(Text)
