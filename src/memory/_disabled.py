"""The kill switch: ``MEMORY_ENABLED=0`` makes ``MemoryService.from_config`` return this.

A cheap no-op with the same surface: appends return records with real, time-ordered ids (so
a core that writes ids back keeps working), reads return nothing, ``health()`` says disabled.
Nothing touches the disk or the network.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ._ids import IdGenerator
from ._records import EventRecord, TurnRecord, to_key

ENV = "MEMORY_ENABLED"


def disabled_by_env() -> bool:
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off", "disabled")


class DisabledMemoryService:
    disabled = True

    def __init__(self, reason: str = f"{ENV}=0") -> None:
        self._ids = IdGenerator()
        self.reason = reason

    def __enter__(self) -> DisabledMemoryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append_event(self, obs: Any, session_key: Any, gate_result: Any = None, meta: Any = None) -> EventRecord:
        return EventRecord(self._ids.new_id(), time.time(), to_key(session_key), "null")

    def append_turn(self, session_key: Any, input_event_id: Any, plan: Any = None, meta: Any = None) -> TurnRecord:
        return TurnRecord(self._ids.new_id(), to_key(session_key), None, started_at=time.time())

    def finish_turn(self, turn_id: Any, final_output_obs_id: Any = None, status: Any = "ok", error: Any = None) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        # Every read (get_*, list_*, search_*) answers "nothing"; flush/close succeed.
        if name.startswith(("get_", "search_", "list_")):
            return lambda *a, **k: [] if name.startswith(("get_recent", "search_", "list_")) else None
        if name in ("flush", "close"):
            return lambda *a, **k: True
        raise AttributeError(name)

    def health(self) -> dict[str, Any]:
        return {"status": "disabled", "reason": self.reason, "database": {"reachable": False}, "pending": 0}

    def check(self) -> list[str]:
        return []
