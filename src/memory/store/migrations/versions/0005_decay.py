"""decay: per-item zones and recall counts, tombstones of forgotten items, the decay runner's lease

Revision ID: 0005
Revises: 0004

Every step is idempotent (see the rule in ``memory.store.migrations``): three tables, then their
indexes, each created only if absent, then the lease row inserted only if missing, so a kill after
any step resumes at the next.

* ``item_state``: one row per note or event that decay looks after (``kind`` is recall's kind:
  ``event`` or ``knowledge``). Rows are adopted from committed data by the decay run, never written
  on the append path. ``idle_since`` is max(``zone_since``, ``last_recalled_at``), kept in the row
  so that ``ix_item_state_decay`` (pinned, zone, idle_since) serves the demote and forget scans as ranges.
* ``tombstones``: a forgotten item (reason, time, content digest, and the row itself as JSON so
  ``restore`` can put it back; a note's place in ``.trash`` and whether its file has moved yet).
* ``decay_lease``: one row per named job; a process runs decay only while it holds the row
  (an UPDATE that takes it if expired or already its own), across processes and hosts.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from memory.store.migrations import drop_table_if_present, ensure_index, ensure_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}
BIG = mysql.BIGINT().with_variant(sa.Integer(), "sqlite")
LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def key(n: int = 255) -> sa.types.TypeEngine:
    return sa.String(n).with_variant(mysql.VARCHAR(n, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    ensure_table(
        "item_state",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("item_id", key(), primary_key=True),
        sa.Column("zone", sa.Integer(), nullable=False),
        sa.Column("zone_since", sa.Double(), nullable=False),
        sa.Column("idle_since", sa.Double(), nullable=False),
        sa.Column("recall_count", BIG, nullable=False),
        sa.Column("last_recalled_at", sa.Double()),
        sa.Column("pinned", sa.Integer(), nullable=False),
        sa.Column("declared_zone", sa.Integer()),
        sa.Column("source_at", sa.Double()),
        **ARGS,
    )
    ensure_index("ix_item_state_decay", "item_state", ["pinned", "zone", "idle_since"])
    ensure_table(
        "tombstones",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("item_id", key(), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("forgotten_at", sa.Double(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("zone", sa.Integer()),
        sa.Column("payload", LONG, nullable=False),
        sa.Column("trash_path", key(1024)),
        sa.Column("file_state", sa.String(16)),
        **ARGS,
    )
    ensure_index("ix_tombstones_item", "tombstones", ["item_id"])
    ensure_index("ix_tombstones_file", "tombstones", ["file_state"])
    ensure_table(
        "decay_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255)),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("acquired_at", sa.Double()),
        sa.Column("last_run_at", sa.Double()),
        sa.Column("last_result", sa.Text()),
        **ARGS,
    )
    bind = op.get_bind()
    if not bind.execute(sa.text("SELECT 1 FROM decay_lease WHERE name = 'decay'")).first():
        bind.execute(sa.text("INSERT INTO decay_lease (name, expires_at) VALUES ('decay', 0)"))


def downgrade() -> None:
    drop_table_if_present("decay_lease")
    drop_table_if_present("tombstones")
    drop_table_if_present("item_state")
