"""Relational storage behind one contract (:class:`Store`), with thin dialect subclasses."""

from __future__ import annotations

from .._config import DatabaseConfig
from ._base import Row, Store
from ._decay import DecayWrites
from ._sql import SqlStore


def create_store(config: DatabaseConfig) -> SqlStore:
    """The store for the configured dialect. Creating it never touches the network."""
    if config.dialect == "sqlite":
        from ._sqlite import SqliteStore

        return SqliteStore(config)
    from ._mysql import MysqlStore

    return MysqlStore(config)


__all__ = ["DecayWrites", "Row", "SqlStore", "Store", "create_store"]
