"""configs and knowledge (the vault's synced copy)

Revision ID: 0002
Revises: 0001

Every step is idempotent (see the rule in ``memory.store.migrations``).
"""
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from memory.store.migrations import drop_table_if_present, ensure_index, ensure_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
BIG = mysql.BIGINT().with_variant(sa.Integer(), "sqlite")
ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def key(n: int = 255) -> sa.types.TypeEngine:
    return sa.String(n).with_variant(mysql.VARCHAR(n, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    ensure_table(
        "configs",
        sa.Column("key", key(), primary_key=True),
        sa.Column("path", key(1024), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", LONG, nullable=False),
        sa.Column("metadata_json", LONG),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("mtime_ns", BIG, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        **ARGS,
    )
    ensure_table(
        "knowledge",
        sa.Column("key", key(), primary_key=True),
        sa.Column("category", key(), nullable=False),
        sa.Column("path", key(1024), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", LONG, nullable=False),
        sa.Column("tags", LONG),
        sa.Column("headings", LONG),
        sa.Column("links", LONG),
        sa.Column("metadata_json", LONG),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("mtime_ns", BIG, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        **ARGS,
    )
    ensure_index("ix_knowledge_category", "knowledge", ["category"])


def downgrade() -> None:
    drop_table_if_present("knowledge")
    drop_table_if_present("configs")
