"""graph: typed, weighted edges between items (event ids, turn ids, knowledge keys)

Revision ID: 0004
Revises: 0003

Every step is idempotent (see the rule in ``memory.store.migrations``): one table, then its two
indexes, each created only if absent, so a kill after any step resumes at the next.

* ``graph_edges``: one row per ``(src, dst, type)``; re-adding an edge updates it in place.
* ``ix_graph_edges_in`` (dst, type): incoming edges and the reverse hop of a walk.
* ``ix_graph_edges_evict`` (src, weight, created_at): a source's lowest-weight, oldest edge is the
  first entry of its range, which is what the per-item cap evicts.
* On SQLite the table is ``WITHOUT ROWID``: clustered on the primary key like InnoDB, so the
  secondary indexes carry ``src, dst, type`` and a walk's reverse hop never reads the table.
"""
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from memory.store.migrations import drop_table_if_present, ensure_index, ensure_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def key(n: int = 255) -> sa.types.TypeEngine:
    return sa.String(n).with_variant(mysql.VARCHAR(n, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    ensure_table(
        "graph_edges",
        sa.Column("src", key(), primary_key=True),
        sa.Column("dst", key(), primary_key=True),
        sa.Column("type", key(32), primary_key=True),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sqlite_with_rowid=False,
        **ARGS,
    )
    ensure_index("ix_graph_edges_in", "graph_edges", ["dst", "type"])
    ensure_index("ix_graph_edges_evict", "graph_edges", ["src", "weight", "created_at"])


def downgrade() -> None:
    drop_table_if_present("graph_edges")
