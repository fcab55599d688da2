"""configs and knowledge (the vault's synced copy)

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

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
    op.create_table(
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
    op.create_table(
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
    op.create_index("ix_knowledge_category", "knowledge", ["category"])


def downgrade() -> None:
    op.drop_table("knowledge")
    op.drop_table("configs")
