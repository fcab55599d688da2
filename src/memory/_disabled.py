"""The kill switch: ``MEMORY_ENABLED=0`` makes ``MemoryService.from_config`` return this.

A cheap no-op that implements :class:`~memory.MemoryAPI` method by method, with the same
signatures as :class:`~memory.MemoryService` (``tests/test_protocol.py`` holds the two
together). Appends return records with real, time-ordered ids (so a core that writes ids back
keeps working); reads find nothing; vault writes return ``None`` — nothing was written, and a
``Note`` would name a file that does not exist; ``health()`` says ``disabled``. Nothing touches
the disk or the network. There is deliberately no ``__getattr__`` catch-all: a misspelt call
fails loudly here exactly as it would on the real service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from ._ids import IdGenerator
from ._records import Edge, EventRecord, TurnRecord, to_edge_type, to_key, to_weight
from .decay import ForgetResult, RestoreResult
from .index import Hit
from .index._fusion import parse_kinds
from .vault import Note, SyncReport

ENV = "MEMORY_ENABLED"


def disabled_by_env() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off", "disabled")


class DisabledGraph:
    """``graph`` of the disabled service: writes hand back the edge and store nothing; reads are
    empty (the same ``ValueError`` for an invalid direction as the real one)."""

    def add_edge(self, src: Any, dst: Any, type: Any = "related_to", weight: Any = 1.0) -> Edge:  # noqa: A002
        at = time.time()
        return Edge(to_key(src), to_key(dst), to_edge_type(type), to_weight(weight), at, at)

    def remove_item(self, item_id: Any) -> None:
        return None

    def edges(self, item_id: Any, direction: str = "out", types: Sequence[str] | None = None) -> list[Edge]:
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction: expected one of out, in, both, found {direction!r}")
        return []

    def related(self, item_id: Any, depth: int = 1, types: Sequence[str] | None = None,
                limit: int = 100) -> list[tuple[str, int]]:
        return []

    def count(self) -> int:
        return 0


class DisabledMemoryService:
    """Memory switched off: every call answers at once, nothing is stored."""

    disabled = True

    def __init__(self, reason: str = f"{ENV}=0") -> None:
        self._ids = IdGenerator()
        self.reason = reason
        self.graph = DisabledGraph()

    def __enter__(self) -> DisabledMemoryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DisabledMemoryService {self.reason}>"

    # -- writes: ids, nothing stored ---------------------------------------------------------------
    def append_event(self, obs: Any, session_key: Any, gate_result: Any = None, meta: Any = None) -> EventRecord:
        return EventRecord(self._ids.new_id(), time.time(), to_key(session_key), "null")

    def append_turn(self, session_key: Any, input_event_id: Any, plan: Any = None, meta: Any = None) -> TurnRecord:
        return TurnRecord(self._ids.new_id(), to_key(session_key), None, started_at=time.time())

    def finish_turn(self, turn_id: Any, final_output_obs_id: Any = None, status: Any = "ok",
                    error: Any = None) -> None:
        return None

    # -- reads: nothing is found -------------------------------------------------------------------
    def get_event(self, event_id: str) -> EventRecord | None:
        return None

    def get_recent_events(self, session_key: Any, limit: int = 20) -> list[EventRecord]:
        return []

    def get_turn(self, turn_id: str) -> TurnRecord | None:
        return None

    def get_recent_turns(self, session_key: Any, limit: int = 20) -> list[TurnRecord]:
        return []

    # -- the vault: reads find nothing, writes write nothing (None) --------------------------------
    def get_system_prompt(self) -> str | None:
        return None

    def upsert_system_prompt(self, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        return None

    def get_user_profile(self, user_id: Any) -> str | None:
        return None

    def upsert_user_profile(self, user_id: Any, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        return None

    def get_config(self, key: str) -> Note | None:
        return None

    def upsert_config(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        return None

    def get_knowledge(self, key: str) -> Note | None:
        return None

    def list_knowledge(self, category: str | None = None) -> list[Note]:
        return []

    def upsert_knowledge(self, key: str, content: str, metadata: dict[str, Any] | None = None) -> Note | None:
        return None

    def delete_knowledge(self, key: str) -> bool:
        return False

    def search_knowledge(self, query: str, limit: int = 5) -> list[Note]:
        return []

    def recall(self, query: Any, k: int | None = None, *, kinds: Any = ("knowledge", "event"),
               session_key: Any = None, since: Any = None, until: Any = None) -> list[Hit]:
        parse_kinds(kinds)  # the same one error as the real service
        return []

    def forget(self, item_id: Any, reason: Any = "forgotten by request") -> ForgetResult:
        return ForgetResult(False, to_key(item_id), None, f"memory is disabled ({self.reason})")

    def restore(self, item_id: Any) -> RestoreResult:
        return RestoreResult(False, to_key(item_id), None, f"memory is disabled ({self.reason})")

    def vault_sync(self) -> SyncReport:
        return SyncReport(new=0, modified=0, moved=0, deleted=0, unchanged=0, invalid=(), database_ok=False,
                          seconds=0.0)

    def vault_check(self) -> dict[str, Any]:
        # Same keys as the real report; "ok" is False because nothing was checked.
        return {"root": None, "files": 0, "invalid": {}, "conflicts": [], "database": False, "ok": False,
                "disabled": True, "reason": self.reason}

    # -- lifecycle -----------------------------------------------------------------------------------
    def initialize(self) -> None:
        return None

    def flush(self, timeout: float | None = 10.0) -> bool:
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        return True

    def check(self) -> list[str]:
        return []

    def health(self) -> dict[str, Any]:
        return {"status": "disabled", "reason": self.reason, "database": {"reachable": False}, "pending": 0,
                "warnings": [f"memory is disabled ({self.reason})"]}
