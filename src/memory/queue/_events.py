"""What the writer tells the audit log: outages and replays, decided by one pure function.

The writer observes itself before and after it writes a batch (:class:`Observation`) and
:func:`step` turns the change into events:

* ``outage_start`` when the breaker opens (the database failed ``breaker_threshold`` times in a
  row), with the error and how many records wait; ``outage_end`` at the first write that
  succeeds after it, with the outage's duration. A single failed write below the threshold is
  not an outage: the breaker is the one place that already decides that.
* ``replay_start`` when records that waited on disk start going to the database: right after an
  outage ends with records waiting, and at start-up when the journal holds an earlier run's
  records (or adopted slots'). ``replay_end`` when everything accepted before the replay began
  is written — a position in the stream, so records appended meanwhile never keep a replay open
  under steady load. Counts are the records waiting when it began; duration in seconds.

Events carry wall-clock durations (``wall``) only; the monotonic clock orders nothing here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from .._audit_events import DEAD_LETTER, OUTAGE_END, OUTAGE_START, REPLAY_END, REPLAY_START
from ._deadletter import KIND_NAMES
from ._item import Pos

Event = tuple[str, dict[str, Any]]


class Sink(Protocol):
    def emit(self, event: str, /, **fields: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class Observation:
    """The writer after one iteration."""

    wall: float
    initialized: bool  # the schema is at head: the database answered at least once
    breaker_open: bool
    error: str  # the breaker's last error
    pending: int  # records accepted and not settled
    head: Pos  # the stream's end now
    drained_to: Callable[[Pos], bool]  # whether everything before a position is settled


@dataclasses.dataclass(frozen=True)
class Mood:
    """What the events so far said: an outage since, a replay since (and up to where)."""

    started: bool = False
    outage_since: float | None = None
    replay_since: float | None = None
    replay_target: Pos | None = None
    replay_records: int = 0
    cause: str = ""
    last_pending: int = 0  # at the previous observation (a batch may settle them all at once)


def step(mood: Mood, o: Observation) -> tuple[Mood, tuple[Event, ...]]:
    events: list[Event] = []
    if mood.outage_since is None and o.breaker_open:
        events.append((OUTAGE_START, {"error": o.error, "pending": o.pending}))
        mood = dataclasses.replace(mood, outage_since=o.wall)
    elif mood.outage_since is not None and not o.breaker_open and o.initialized:
        events.append((OUTAGE_END, {"duration_s": round(max(0.0, o.wall - mood.outage_since), 3),
                                    "pending": o.pending}))
        mood = dataclasses.replace(mood, outage_since=None)
        waiting = max(o.pending, mood.last_pending)
        if waiting and mood.replay_since is None:
            mood = dataclasses.replace(mood, replay_since=o.wall, replay_target=o.head, replay_records=waiting,
                                       cause="outage")
            events.append((REPLAY_START, {"records": waiting, "cause": "outage"}))
    if not mood.started and o.initialized and not o.breaker_open:
        # The first time the database answers: what waits now was journaled before we could write.
        mood = dataclasses.replace(mood, started=True)
        if o.pending and mood.replay_since is None:
            mood = dataclasses.replace(mood, replay_since=o.wall, replay_target=o.head, replay_records=o.pending,
                                       cause="start-up")
            events.append((REPLAY_START, {"records": o.pending, "cause": "start-up"}))
    if mood.replay_target is not None and mood.replay_since is not None and o.drained_to(mood.replay_target):
        events.append((REPLAY_END, {"records": mood.replay_records, "cause": mood.cause,
                                    "duration_s": round(max(0.0, o.wall - mood.replay_since), 3)}))
        mood = dataclasses.replace(mood, replay_since=None, replay_target=None, replay_records=0, cause="")
    return dataclasses.replace(mood, last_pending=o.pending), tuple(events)


class QueueAudit:
    """Holds the writer's mood and hands each event to the audit sink (never raising)."""

    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink
        self.mood = Mood()

    def observe(self, o: Observation) -> tuple[Event, ...]:
        self.mood, events = step(self.mood, o)
        if self.sink is not None:
            for name, fields in events:
                try:
                    self.sink.emit(name, **fields)
                except Exception:  # noqa: BLE001 - the audit log never reaches the writer
                    pass
        return events

    def dead_letter(self, entry: dict[str, Any]) -> None:
        """One line per record the dead-letter file took (called by :class:`DeadLetter`)."""
        if self.sink is None:
            return
        try:
            row = entry.get("row") or ()
            self.sink.emit(DEAD_LETTER, kind=KIND_NAMES.get(entry.get("kind"), entry.get("kind")),
                           id=row[0] if row else None, attempts=entry.get("attempts"),
                           error=entry.get("last_error"))
        except Exception:  # noqa: BLE001
            pass
