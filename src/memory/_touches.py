"""Recall touches on their way to the journal: straight through while the writer keeps up,
coalesced per item while it cannot.

A touch ``(kind, item_id, at)`` says recall returned an item; decay counts it and promotes the
item one zone. Touches are derived from recall, not records a caller handed over, and they share
the journal's disk and memory bounds with events. During a long outage a busy recall loop would
otherwise fill those bounds with statistics and, at the limit, make the queue hold or drop the
events that matter. So while the database is known down (breaker open) or the writer is behind
(more records pending than the memory window holds), touches wait here instead:

* **Coalesced per item**: an item recalled a thousand times during the outage is one touch, at its
  newest time. Decay then promotes it one zone (what a run of recalls does anyway: a batch's
  touches of one item count once) and its ``recall_count`` grows by one, not by a thousand.
* **Bounded**: at most ``capacity`` items wait; touches of further items are shed and counted
  (``health()["decay"]["touches"]``). A shed touch costs an item one promotion, never a record.
* **Released at the next touch after recovery**, ahead of that touch, in item order.

Held touches live in memory only: a process that stops during the outage loses them, which
costs promotions, not data. Pure bookkeeping under one lock; no thread, no I/O.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

Touch = tuple[str, str, float]


@dataclasses.dataclass(frozen=True)
class TouchStats:
    held: int  # items waiting now
    coalesced: int  # touches folded into one already waiting (since start)
    shed: int  # touches dropped because ``capacity`` items were waiting (since start)
    released: int  # held touches handed on after a recovery (since start)


class TouchBuffer:
    """Decides which touches go to the journal now (``offer``); holds the rest, coalesced."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = max(0, int(capacity))
        self._held: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._coalesced = self._shed = self._released = 0

    def offer(self, touches: Iterable[Touch], backlog: bool) -> list[Touch]:
        """The touches to submit now. With ``backlog`` (database down or writer behind) none: they
        are held, coalesced per item; without, whatever was held goes first, then ``touches``."""
        with self._lock:
            if backlog:
                held = self._held
                for kind, item_id, at in touches:
                    key = (kind, item_id)
                    if key in held:
                        self._coalesced += 1
                        if at > held[key]:
                            held[key] = at
                    elif len(held) < self.capacity:
                        held[key] = at
                    else:
                        self._shed += 1
                return []
            if not self._held:
                return list(touches)
            out = [(kind, item_id, at) for (kind, item_id), at in sorted(self._held.items())]
            self._released += len(out)
            self._held = {}
        out.extend(touches)
        return out

    def stats(self) -> TouchStats:
        with self._lock:
            return TouchStats(len(self._held), self._coalesced, self._shed, self._released)


__all__ = ["Touch", "TouchBuffer", "TouchStats"]
