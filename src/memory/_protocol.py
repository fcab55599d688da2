"""``MemoryAPI``: the one surface a chat core may rely on, whatever service it was handed.

:class:`~memory.MemoryService` (the real thing) and :class:`~memory.DisabledMemoryService` (the
kill switch) both implement every method below with the same signature, explicitly — no
``__getattr__`` catch-all — so a core written against this protocol keeps working when an
operator turns memory off. ``tests/test_protocol.py`` checks by introspection that every public
method of ``MemoryService`` is listed here and that both classes implement each one with a
compatible signature: a method added to the service without the protocol and the disabled
service fails that test.

What the disabled service answers is documented on each method ("disabled: ..."). The rule:
writes succeed without doing anything (appends still hand out real, time-ordered ids), reads
find nothing, and vault writes return ``None`` — "nothing was written". A made-up ``Note`` would
claim a path and a digest that do not exist on disk; ``None`` is the honest answer, and it is
why the protocol types vault writes as ``Note | None``.

Construction (``MemoryService.from_config``) is not part of the protocol: a core receives a
service, it does not build one through this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ._records import Edge, EventRecord, TurnRecord
from .decay import ForgetResult, RestoreResult
from .index import Hit
from .vault import Note, SyncReport

__all__ = ["GraphAPI", "MemoryAPI"]


@runtime_checkable
class GraphAPI(Protocol):
    """``memory.graph``: typed, weighted edges between items (event ids, turn ids, knowledge keys).
    Writes never raise; reads never raise except ``ValueError`` for a clearly invalid argument.
    Disabled (the kill switch, or ``graph.enabled: false``): writes do nothing, reads are empty."""

    def add_edge(self, src: Any, dst: Any, type: Any = "related_to", weight: Any = 1.0) -> Edge:  # noqa: A002
        """Add or re-weigh ``src -[type]-> dst`` (journaled; durable once it returns)."""
        ...

    def remove_item(self, item_id: Any) -> None:
        """Remove every edge from or to ``item_id`` (journaled)."""
        ...

    def edges(self, item_id: Any, direction: str = "out", types: Sequence[str] | None = None) -> list[Edge]:
        """Edges of ``item_id`` (``out``, ``in`` or ``both``), highest weight first."""
        ...

    def related(self, item_id: Any, depth: int = 1, types: Sequence[str] | None = None,
                limit: int = 100) -> list[tuple[str, int]]:
        """``(id, distance)`` of the items within ``depth`` hops, nearest first."""
        ...

    def count(self) -> int:
        """Number of edges stored."""
        ...


@runtime_checkable
class MemoryAPI(Protocol):
    """Every public method of the memory service. See the module docstring for the rules."""

    #: The graph plug-in (``service.graph.add_edge(...)``); see :class:`GraphAPI`.
    graph: GraphAPI

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> MemoryAPI:
        ...

    def __exit__(self, *exc: object) -> None:
        ...

    # -- writes: never raise -----------------------------------------------------------------------
    def append_event(self, obs: Any, session_key: Any, gate_result: Any = None, meta: Any = None) -> EventRecord:
        """Record one inbound observation. Disabled: a record with a real id, nothing stored."""
        ...

    def append_turn(self, session_key: Any, input_event_id: Any, plan: Any = None, meta: Any = None) -> TurnRecord:
        """Start one agent turn. Disabled: a record with a real id, nothing stored."""
        ...

    def finish_turn(self, turn_id: Any, final_output_obs_id: Any = None, status: Any = "ok",
                    error: Any = None) -> None:
        """Finish a turn. Disabled: nothing."""
        ...

    # -- reads -------------------------------------------------------------------------------------
    def get_event(self, event_id: str) -> EventRecord | None:
        """Disabled: None."""
        ...

    def get_recent_events(self, session_key: Any, limit: int = 20) -> list[EventRecord]:
        """Disabled: []."""
        ...

    def get_turn(self, turn_id: str) -> TurnRecord | None:
        """Disabled: None."""
        ...

    def get_recent_turns(self, session_key: Any, limit: int = 20) -> list[TurnRecord]:
        """Disabled: []."""
        ...

    # -- the vault ---------------------------------------------------------------------------------
    def get_system_prompt(self) -> str | None:
        """Disabled: None."""
        ...

    def upsert_system_prompt(self, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        """Disabled: None (nothing written)."""
        ...

    def get_user_profile(self, user_id: Any) -> str | None:
        """Disabled: None."""
        ...

    def upsert_user_profile(self, user_id: Any, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        """Disabled: None (nothing written)."""
        ...

    def get_config(self, key: str) -> Note | None:
        """Disabled: None."""
        ...

    def upsert_config(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        """Disabled: None (nothing written)."""
        ...

    def get_knowledge(self, key: str) -> Note | None:
        """Disabled: None."""
        ...

    def list_knowledge(self, category: str | None = None) -> list[Note]:
        """Disabled: []."""
        ...

    def upsert_knowledge(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        """Disabled: None (nothing written)."""
        ...

    def delete_knowledge(self, key: str) -> bool:
        """Disabled: False (nothing deleted)."""
        ...

    def search_knowledge(self, query: str, limit: int = 5) -> list[Note]:
        """Disabled: []."""
        ...

    def recall(self, query: Any, k: int | None = None, *, kinds: Any = ("knowledge", "event"),
               session_key: Any = None, since: Any = None, until: Any = None) -> list[Hit]:
        """Notes and events ranked for ``query``. Raises only ValueError for bad ``kinds``. Disabled: []."""
        ...

    def forget(self, item_id: Any, reason: Any = "forgotten by request") -> ForgetResult:
        """Take an event or note out of memory (tombstone; a note's file to the trash). Never raises."""
        ...

    def restore(self, item_id: Any) -> RestoreResult:
        """Bring a forgotten item back and re-index it. Never raises."""
        ...

    def vault_sync(self) -> SyncReport:
        """Disabled: an all-zero report with ``database_ok=False`` (nothing scanned, nothing written)."""
        ...

    def vault_check(self) -> dict[str, Any]:
        """Disabled: ``{"disabled": True, "ok": False, ...}`` with empty findings."""
        ...

    # -- lifecycle ---------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Bring the schema to head now. Disabled: nothing (there is no database)."""
        ...

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Disabled: True (nothing is ever pending)."""
        ...

    def close(self, timeout: float | None = 5.0) -> bool:
        """Disabled: True."""
        ...

    def check(self) -> list[str]:
        """Disabled: []."""
        ...

    def health(self) -> dict[str, Any]:
        """Disabled: ``status`` is ``disabled``."""
        ...
