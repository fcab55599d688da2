"""events and turns

Revision ID: 0001
Revises:

Every step is idempotent (see the rule in ``memory.store.migrations``).
"""
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from memory.store.migrations import drop_table_if_present, ensure_index, ensure_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def key(n: int = 255) -> sa.types.TypeEngine:
    return sa.String(n).with_variant(mysql.VARCHAR(n, collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    ensure_table(
        "events",
        sa.Column("event_id", key(32), primary_key=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("session_key", key(), nullable=False),
        sa.Column("obs", LONG, nullable=False),
        sa.Column("gate", LONG),
        sa.Column("meta", LONG),
        **ARGS,
    )
    ensure_index("ix_events_session", "events", ["session_key", "event_id"])
    ensure_table(
        "turns",
        sa.Column("turn_id", key(32), primary_key=True),
        sa.Column("session_key", key(), nullable=False),
        sa.Column("input_event_id", key()),
        sa.Column("plan", LONG),
        sa.Column("meta", LONG),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", LONG),
        sa.Column("final_output_obs_id", key()),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double()),
        **ARGS,
    )
    ensure_index("ix_turns_session", "turns", ["session_key", "turn_id"])
    ensure_index("ix_turns_input_event", "turns", ["input_event_id"])


def downgrade() -> None:
    drop_table_if_present("turns")
    drop_table_if_present("events")
