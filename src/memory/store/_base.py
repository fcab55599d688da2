"""The storage contract. Every backend states these guarantees; the service relies on nothing else.

Rows are plain tuples in the column order of the ``events`` / ``turns`` tables (see
``memory._records``), already serialized: the store never touches JSON on the write path.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

Row = tuple[Any, ...]


class Store(abc.ABC):
    """Relational storage of events, turns and the vault's synced copy."""

    dialect: str = ""

    @abc.abstractmethod
    def initialize(self) -> None:
        """Bring the schema to head. Idempotent; two processes calling it at once both succeed;
        a call killed at any point leaves a state the next call finishes.

        Raises :class:`~memory.StoreUnavailable` when the database cannot be reached, or when the
        schema is still not complete afterwards: returning means ready, never "partly ready".
        """

    @abc.abstractmethod
    def write_batch(self, events: Sequence[Row], turns: Sequence[Row], finishes: Sequence[Row], *,
                    edges: Sequence[Row] = (), touches: Sequence[Row] = ()) -> list[int]:
        """Write everything in one transaction: all of it commits, or none of it.

        * events ``(event_id, ts, session_key, obs, gate, meta)`` and turns ``(turn_id,
          session_key, input_event_id, plan, meta, status, started_at)`` are inserted
          idempotently by primary key: a row that already exists is left as it is;
        * finishes ``(turn_id, status, error, final_output_obs_id, finished_at)`` are applied
          after the inserts. The latest ``finished_at`` wins, whatever order finishes arrive in
          (within a batch or across batches): a finish lands only if the stored ``finished_at``
          is NULL or not newer than its own (on a tie, the one applied later). Re-applying a
          finish changes nothing;
        * edges ``(record_id, src, dst, type, weight, at)`` (``service.graph.add_edge``; empty
          ``dst`` and ``type`` remove the item's edges) are applied last, in order;
        * touches ``(record_id, kind, item_id, at)`` (recall touched an item; decay) count recalls.

        Returns the indexes of finishes whose turn does not exist. A finish that lost to a newer
        stored one is not missing: its turn exists and it is resolved.
        Raises :class:`~memory.StoreUnavailable` (retry may help) or
        :class:`~memory.StoreRejected` (some row is unacceptable to the database).
        """

    @abc.abstractmethod
    def get_event(self, event_id: str) -> Row | None:
        """The event row or None. Raises StoreUnavailable."""

    @abc.abstractmethod
    def recent_events(self, session_key: str, limit: int) -> list[Row]:
        """Up to ``limit`` events of a session, newest first."""

    @abc.abstractmethod
    def get_turn(self, turn_id: str) -> Row | None:
        """The turn row ``(turn_id, session_key, input_event_id, plan, meta, status, error,
        final_output_obs_id, started_at, finished_at)`` or None."""

    @abc.abstractmethod
    def recent_turns(self, session_key: str, limit: int) -> list[Row]:
        """Up to ``limit`` turns of a session, newest first."""

    @abc.abstractmethod
    def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist in ``events`` or ``turns`` (for checks and tests)."""

    @abc.abstractmethod
    def count(self, table: str) -> int:
        """Number of rows in a table."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """True if a trivial query succeeds now. Never raises."""

    @abc.abstractmethod
    def dispose(self) -> None:
        """Close every pooled connection. The store can be used again afterwards."""
