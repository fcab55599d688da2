"""Records handed back to callers, and the coercion that turns anything into JSON text.

Coercion rules (``to_json``), decided once here so every ``append_*`` behaves the same:

* mappings, lists, tuples, str, int, float, bool and None are stored as they are;
* dataclasses become a dict of their fields (nested ones too); objects with ``model_dump()``
  (pydantic 2), ``dict()`` (pydantic 1) or ``to_dict()`` become what that returns;
* datetime/date/time become ISO-8601 strings, Enum its ``.value``, Decimal/UUID/Path their
  string, set/frozenset a list (sorted when the items allow), bytes UTF-8 text when they are
  valid UTF-8 and ``"base64:..."`` otherwise;
* NaN and infinities become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has
  no such numbers and MySQL rejects them); non-string dict keys become their string;
* a reference cycle is cut at the repeated object, which becomes the string ``"<cycle>"``;
* anything else is stored as ``str(obj)`` (or its ``repr`` if ``str`` raises).

The common case costs one C-level ``json.dumps``; the slow, careful walk runs only when that
fails. Record objects keep the JSON text and decode it on attribute access, so every access
returns a fresh copy the caller may mutate freely.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import math
import uuid
from decimal import Decimal
from pathlib import PurePath
from typing import Any

EVENT, TURN, FINISH = 1, 2, 3
#: A graph edge (``service.graph``): ``(record_id, src, dst, type, weight, at)``. The record id
#: gives every edge record its own identity in the retry list and the dead-letter file (many
#: edges share a source). ``dst`` and ``type`` None make it a removal of every edge of ``src``.
EDGE = 4
#: Recall touched an item (decay): ``(record_id, item_kind, item_id, at)`` — ``item_kind`` is
#: ``knowledge`` or ``event``. Counted and promoted by the writer, in its batch transaction.
TOUCH = 5
KIND_NAMES = {EVENT: "event", TURN: "turn", FINISH: "finish", EDGE: "edge", TOUCH: "touch"}
STATUS_RUNNING, STATUS_OK, STATUS_ERROR = "running", "ok", "error"
MAX_KEY_LEN = 255
MAX_EDGE_TYPE_LEN = 32  # graph_edges.type is VARCHAR(32)


def _default(obj: Any) -> Any:
    """``json.dumps`` hook for values JSON cannot hold."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (Decimal, uuid.UUID, PurePath)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    for name in ("model_dump", "dict", "to_dict"):
        method = getattr(obj, name, None)
        if callable(method) and not isinstance(obj, type):
            try:
                return method(mode="json") if name == "model_dump" else method()
            except TypeError:
                return method()
    return _as_text(obj)


def _as_text(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop a write
        try:
            return repr(obj)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(obj).__name__}>"


_fast = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default).encode


def _float(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _walk(obj: Any, active: set[int], depth: int) -> Any:
    """Careful conversion: cuts cycles, stringifies odd keys, replaces NaN. Slow path only."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return _float(obj)
    if depth > 200:
        return _as_text(obj)
    marker = id(obj)
    if marker in active:
        return "<cycle>"
    active.add(marker)
    try:
        if isinstance(obj, dict):
            return {
                (k if isinstance(k, str) else _as_text(_walk(k, active, depth + 1))): _walk(v, active, depth + 1)
                for k, v in list(obj.items())
            }
        if isinstance(obj, (list, tuple)):
            return [_walk(v, active, depth + 1) for v in obj]
        try:
            converted = _default(obj)
        except Exception:  # noqa: BLE001 - a raising to_dict() falls back to text
            converted = _as_text(obj)
        if isinstance(converted, str):
            return converted
        return _walk(converted, active, depth + 1)
    finally:
        active.discard(marker)


def to_json(value: Any) -> str:
    """Serialize anything to JSON text; never raises."""
    try:
        return _fast(value)
    except (ValueError, TypeError, RecursionError):
        pass
    except Exception:  # noqa: BLE001 - e.g. a to_dict() that raises: take the careful path
        pass
    try:
        return _fast(_walk(value, set(), 0))
    except Exception:  # noqa: BLE001
        return json.dumps(_as_text(value))


def to_key(value: Any) -> str:
    """Coerce an identifier (session key, output id) to text that fits an indexed column.

    Longer values keep a readable prefix plus a hash of the whole, so distinct keys stay
    distinct and no row is rejected for length.
    """
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    elif isinstance(value, enum.Enum):
        text = _as_text(value.value)
    else:
        text = _as_text(value)
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    if len(text) > MAX_KEY_LEN:  # VARCHAR(255) counts characters, on MySQL and SQLite alike
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        text = f"{text[:200]}…{digest}"
    return text


def to_edge_type(value: Any) -> str:
    """An edge type as text that fits its column: longer ones keep a prefix plus a hash (distinct
    types stay distinct). An empty type stays empty (the store refuses it: a dead letter)."""
    text = to_key(value)
    if len(text) > MAX_EDGE_TYPE_LEN:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        text = f"{text[:MAX_EDGE_TYPE_LEN - 13]}~{digest}"
    return text


def to_weight(value: Any) -> float:
    """An edge weight as a float: numbers and numeric text as they are, infinities clamped to the
    largest finite float; anything else (NaN, None, text) becomes NaN, which the store refuses —
    the edge then dead-letters with that reason instead of failing the caller."""
    try:
        f = float(value.value if isinstance(value, enum.Enum) else value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    except Exception:  # noqa: BLE001 - a hostile __float__
        return math.nan
    if math.isinf(f):
        return math.copysign(1.7976931348623157e308, f)
    return f


def to_status(status: Any, error: Any) -> tuple[str, str | None]:
    """Normalize a finish status to ``ok``/``error``; an unknown status counts as an error."""
    raw = getattr(status, "value", status)
    text = _as_text(raw).strip().lower() if raw is not None else STATUS_OK
    err = None if error is None else (error if isinstance(error, str) else _describe_error(error))
    if text in (STATUS_OK, STATUS_ERROR):
        return text, err
    return STATUS_ERROR, err if err is not None else f"unknown status {_as_text(raw)!r}"


def _describe_error(error: Any) -> str:
    if isinstance(error, BaseException):
        text = _as_text(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return _as_text(error) if not isinstance(error, (dict, list)) else to_json(error)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRecord:
    """One inbound observation as stored. ``obs``/``gate``/``meta`` decode on access."""

    event_id: str
    ts: float
    session_key: str
    obs_json: str = dataclasses.field(repr=False)
    gate_json: str | None = dataclasses.field(default=None, repr=False)
    meta_json: str | None = dataclasses.field(default=None, repr=False)

    @property
    def obs(self) -> Any:
        return _loads(self.obs_json)

    @property
    def gate(self) -> Any:
        return _loads(self.gate_json)

    @property
    def meta(self) -> dict[str, Any]:
        value = _loads(self.meta_json)
        return value if isinstance(value, dict) else ({} if value is None else {"value": value})

    @property
    def created_at(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.ts, _dt.timezone.utc)

    def row(self) -> tuple[Any, ...]:
        return (self.event_id, self.ts, self.session_key, self.obs_json, self.gate_json, self.meta_json)


@dataclasses.dataclass(frozen=True, slots=True)
class TurnRecord:
    """One agent turn. ``status`` is ``running`` until finished, then ``ok`` or ``error``."""

    turn_id: str
    session_key: str
    input_event_id: str | None
    plan_json: str | None = dataclasses.field(default=None, repr=False)
    meta_json: str | None = dataclasses.field(default=None, repr=False)
    status: str = STATUS_RUNNING
    error: str | None = None
    final_output_obs_id: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def plan(self) -> Any:
        return _loads(self.plan_json)

    @property
    def meta(self) -> dict[str, Any]:
        value = _loads(self.meta_json)
        return value if isinstance(value, dict) else ({} if value is None else {"value": value})

    def row(self) -> tuple[Any, ...]:
        return (self.turn_id, self.session_key, self.input_event_id, self.plan_json, self.meta_json,
                self.status, self.started_at)

    def finished(self, fin: tuple[Any, ...]) -> TurnRecord:
        """This turn with a finish row ``(turn_id, status, error, output_id, finished_at)`` applied."""
        return dataclasses.replace(self, status=fin[1], error=fin[2], final_output_obs_id=fin[3],
                                   finished_at=fin[4])


@dataclasses.dataclass(frozen=True, slots=True)
class Edge:
    """One typed, weighted edge of the graph (``service.graph``). Times are epoch seconds:
    ``created_at`` when the edge was first asserted, ``updated_at`` when its weight last was."""

    src: str
    dst: str
    type: str
    weight: float
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def edge_from_row(row: Any) -> Edge:
    """From a store row ``(src, dst, type, weight, created_at, updated_at)``."""
    return Edge(row[0], row[1], row[2], float(row[3]), float(row[4]), float(row[5]))


def event_from_row(row: Any) -> EventRecord:
    return EventRecord(row[0], float(row[1]), row[2], row[3], row[4], row[5])


def turn_from_row(row: Any) -> TurnRecord:
    return TurnRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                      float(row[8]), None if row[9] is None else float(row[9]))
