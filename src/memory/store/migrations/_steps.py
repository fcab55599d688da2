"""Idempotent schema steps for migrations: each looks at the live schema, then acts only if needed.

They take the same arguments as the ``op.*`` call they wrap, so a migration reads as usual. Each
check inspects afresh (no cached reflection), because the step before it has just changed the
schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def has_table(name: str) -> bool:
    return _inspector().has_table(name)


def has_index(table: str, name: str) -> bool:
    insp = _inspector()
    return insp.has_table(table) and any(ix["name"] == name for ix in insp.get_indexes(table))


def has_column(table: str, name: str) -> bool:
    insp = _inspector()
    return insp.has_table(table) and any(col["name"] == name for col in insp.get_columns(table))


def ensure_table(name: str, *columns: Any, **kw: Any) -> None:
    """``op.create_table`` unless the table exists. CREATE TABLE itself is atomic on every backend
    we support (InnoDB's atomic DDL, SQLite's transactions), so an existing table is complete."""
    if not has_table(name):
        op.create_table(name, *columns, **kw)


def ensure_index(name: str, table: str, columns: Sequence[str], **kw: Any) -> None:
    """``op.create_index`` unless an index of that name exists on the table."""
    if not has_index(table, name):
        op.create_index(name, table, list(columns), **kw)


def ensure_column(table: str, column: sa.Column[Any], **kw: Any) -> None:
    """``op.add_column`` unless the table has a column of that name."""
    if not has_column(table, column.name):
        op.add_column(table, column, **kw)


def drop_index_if_present(name: str, table: str, **kw: Any) -> None:
    if has_index(table, name):
        op.drop_index(name, table_name=table, **kw)


def drop_column_if_present(table: str, name: str, **kw: Any) -> None:
    if has_column(table, name):
        op.drop_column(table, name, **kw)


def drop_table_if_present(name: str, **kw: Any) -> None:
    if has_table(name):
        op.drop_table(name, **kw)
