"""The idempotent migration steps future migrations are built from: each one, run twice (as a
migration restarted after a kill runs it), leaves the same schema as running it once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from memory import load_config
from memory.store import SqlStore, create_store
from memory.store.migrations import (drop_column_if_present, drop_index_if_present, drop_table_if_present,
                                     ensure_column, ensure_index, ensure_table)


@pytest.fixture
def store(dsn: str) -> Iterator[SqlStore]:
    s = create_store(load_config({"database": {"dsn": dsn}}).database)
    try:
        yield s
    finally:
        s.dispose()


def shape(conn: sa.Connection) -> dict[str, tuple[list[str], list[str]]]:
    insp = sa.inspect(conn)
    return {t: (sorted(c["name"] for c in insp.get_columns(t)), sorted(str(i["name"]) for i in insp.get_indexes(t)))
            for t in sorted(insp.get_table_names())}


def test_each_step_twice_equals_once(store: SqlStore) -> None:
    seen = []
    with store.engine.connect() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            for _ in range(2):
                ensure_table("notes", sa.Column("id", sa.String(32), primary_key=True), sa.Column("body", sa.Text()))
                ensure_index("ix_notes_id", "notes", ["id"])
                ensure_column("notes", sa.Column("weight", sa.Float()))
                seen.append(shape(conn))
            assert seen[0] == seen[1] == {"notes": (["body", "id", "weight"], ["ix_notes_id"])}
            for _ in range(2):
                drop_index_if_present("ix_notes_id", "notes")
                drop_column_if_present("notes", "weight")
                seen.append(shape(conn))
            assert seen[2] == seen[3] == {"notes": (["body", "id"], [])}
            for _ in range(2):
                drop_table_if_present("notes")
            assert shape(conn) == {}
        conn.commit()
