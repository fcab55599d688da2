"""recall: the index of notes and events, its outbox and its state

Revision ID: 0003
Revises: 0002

Every step is idempotent (see the rule in ``memory.store.migrations``).

* ``recall_outbox``: what changed and is not indexed yet. The writer adds a row for every event
  in the same transaction that inserts it, the vault sync for every note it writes or deletes;
  the indexer deletes a row only after the index holds the change (so a crash between commit
  and indexing loses nothing).
* ``recall_items``: one row per indexed note or event: filters, digest, keyword ``terms`` (ASCII,
  see ``memory.index._text``), the vector and the embedder that made it.
* ``recall_state``: ``version``, bumped by every change to ``recall_items`` (processes follow it
  to refresh their in-memory vectors), and the reindex tool's checkpoint.
* Keyword search: SQLite gets an FTS5 table over ``recall_items.terms`` (external content, kept
  in step by triggers); MySQL/MariaDB a FULLTEXT index on the column itself.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from memory.store.migrations import drop_index_if_present, drop_table_if_present, ensure_index, ensure_table
from memory.store.migrations._steps import has_index

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}
BIG = mysql.BIGINT().with_variant(sa.Integer(), "sqlite")
TERMS = sa.Text().with_variant(mysql.LONGTEXT(charset="ascii", collation="ascii_bin"), "mysql", "mariadb")


def key(n: int = 255) -> sa.types.TypeEngine:
    return sa.String(n).with_variant(mysql.VARCHAR(n, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    ensure_table(
        "recall_outbox",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("item_id", key(), primary_key=True),
        sa.Column("gen", BIG, nullable=False),
        sa.Column("queued_at", sa.Double(), nullable=False),
        **ARGS,
    )
    ensure_table(
        "recall_items",
        sa.Column("doc_id", BIG, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("item_id", key(), nullable=False),
        sa.Column("session_key", key()),
        sa.Column("ts", sa.Double()),
        sa.Column("title", sa.Text()),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("terms", TERMS, nullable=False),
        sa.Column("embedder", sa.String(64)),
        sa.Column("dim", sa.Integer()),
        sa.Column("vector", sa.LargeBinary()),
        sa.Column("indexed_at", sa.Double(), nullable=False),
        sqlite_autoincrement=True,  # never reuse a doc_id: readers follow additions by doc_id
        **ARGS,
    )
    ensure_index("ux_recall_items_item", "recall_items", ["kind", "item_id"], unique=True)
    ensure_index("ix_recall_items_embedder", "recall_items", ["embedder", "doc_id"])
    ensure_table(
        "recall_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", BIG, nullable=False),
        sa.Column("note", sa.Text()),
        **ARGS,
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE IF NOT EXISTS recall_fts USING fts5(terms, content='recall_items', "
                   "content_rowid='doc_id', prefix='5')")
        op.execute("CREATE TRIGGER IF NOT EXISTS recall_items_ai AFTER INSERT ON recall_items BEGIN "
                   "INSERT INTO recall_fts(rowid, terms) VALUES (new.doc_id, new.terms); END")
        op.execute("CREATE TRIGGER IF NOT EXISTS recall_items_ad AFTER DELETE ON recall_items BEGIN "
                   "INSERT INTO recall_fts(recall_fts, rowid, terms) VALUES ('delete', old.doc_id, old.terms); END")
    elif not has_index("recall_items", "ft_recall_terms"):
        op.create_index("ft_recall_terms", "recall_items", ["terms"], mysql_prefix="FULLTEXT")
    # Idempotent: a second run finds the rows. ``removals`` counts index rows removed for good
    # (readers reconcile their ids only when it moves); ``backfill`` = 1 says nothing predates the
    # outbox: with no events and no notes yet there is nothing for a first-start backfill to find.
    empty = not bind.execute(sa.text("SELECT 1 FROM events")).first() and \
        not bind.execute(sa.text("SELECT 1 FROM knowledge")).first()
    for name, value in (("version", 0), ("removals", 0), ("backfill", 1 if empty else None)):
        if value is not None and not bind.execute(sa.text("SELECT 1 FROM recall_state WHERE name = :n"),
                                                  {"n": name}).first():
            bind.execute(sa.text("INSERT INTO recall_state (name, value) VALUES (:n, :v)"), {"n": name, "v": value})


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS recall_items_ad")
        op.execute("DROP TRIGGER IF EXISTS recall_items_ai")
        op.execute("DROP TABLE IF EXISTS recall_fts")
    else:
        drop_index_if_present("ft_recall_terms", "recall_items")
    drop_table_if_present("recall_state")
    drop_table_if_present("recall_items")
    drop_table_if_present("recall_outbox")
