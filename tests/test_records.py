"""Coercion: anything handed to append_* becomes storable JSON, never an exception."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from memory import IdGenerator
from memory._records import to_json, to_key, to_status


class Mood(enum.Enum):
    HAPPY = "happy"


@dataclasses.dataclass
class Inner:
    when: dt.date
    tags: set[str]


@dataclasses.dataclass
class Obs:
    text: str
    inner: Inner
    mood: Mood


class WithToDict:
    def to_dict(self) -> dict[str, Any]:
        return {"via": "to_dict"}


class Pydanticish:
    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"via": "model_dump", "mode": mode}


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("nope")


def roundtrip(value: Any) -> Any:
    return json.loads(to_json(value))


def test_awkward_types_convert() -> None:
    value = {
        "dt": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "d": dt.date(2026, 1, 2),
        "enum": Mood.HAPPY, "bytes": b"caf\xc3\xa9", "raw": b"\xff\x00", "set": {3, 1, 2},
        "dec": Decimal("1.10"), "uuid": uuid.UUID(int=1), "path": Path("/a/b"),
        "nested": Obs("hi", Inner(dt.date(2026, 1, 1), {"x"}), Mood.HAPPY),
        "nan": float("nan"), "inf": float("-inf"), 7: "int key", (1, 2): "tuple key",
        "obj": WithToDict(), "pyd": Pydanticish(), "broken": BrokenStr(),
    }
    out = roundtrip(value)
    assert out["dt"] == "2026-01-02T03:04:05+00:00" and out["d"] == "2026-01-02"
    assert out["enum"] == "happy" and out["bytes"] == "café" and out["raw"] == "base64:/wA="
    assert out["set"] == [1, 2, 3] and out["dec"] == "1.10" and out["uuid"].endswith("0001")
    assert out["path"] == "/a/b"
    assert out["nested"] == {"text": "hi", "inner": {"when": "2026-01-01", "tags": ["x"]}, "mood": "happy"}
    assert out["nan"] == "NaN" and out["inf"] == "-Infinity"
    assert out["7"] == "int key" and out["[1, 2]"] == "tuple key"
    assert out["obj"] == {"via": "to_dict"} and out["pyd"] == {"via": "model_dump", "mode": "json"}
    assert out["broken"].startswith("<") and "BrokenStr" in out["broken"]


def test_cycles_are_cut_not_raised() -> None:
    a: dict[str, Any] = {"name": "a"}
    a["self"] = a
    lst: list[Any] = [1]
    lst.append(lst)
    out = roundtrip({"a": a, "l": lst})
    assert out["a"] == {"name": "a", "self": "<cycle>"}
    assert out["l"] == [1, "<cycle>"]

    @dataclasses.dataclass
    class Node:
        child: Any = None

    n = Node()
    n.child = n
    assert roundtrip(n) == {"child": "<cycle>"}


def test_plain_objects_and_scalars() -> None:
    assert roundtrip(object()).startswith("<object object")
    assert roundtrip("text") == "text"
    assert roundtrip(None) is None
    assert roundtrip([1, "x", {"y": None}]) == [1, "x", {"y": None}]


def test_keys_are_bounded_and_distinct() -> None:
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    ka, kb = to_key(long_a), to_key(long_b)
    assert len(ka) <= 255 and ka != kb and ka.startswith("a" * 200)
    assert to_key(None) == "" and to_key(42) == "42" and to_key(Mood.HAPPY) == "happy"
    assert "\x00" not in to_key("a\x00b")


def test_status_normalization() -> None:
    assert to_status("ok", None) == ("ok", None)
    assert to_status("ERROR", ValueError("bad")) == ("error", "ValueError: bad")
    assert to_status(Mood.HAPPY, None) == ("error", "unknown status 'happy'")
    assert to_status("weird", "msg") == ("error", "msg")


def test_ids_unique_and_time_ordered_across_threads() -> None:
    gen = IdGenerator()
    per_thread = 125_000
    results: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        out = results[i]
        for _ in range(per_thread):
            out.append(gen.new_id())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for r in results for i in r]
    assert len(all_ids) == 1_000_000
    assert len(set(all_ids)) == 1_000_000
    for r in results:  # within each thread, creation order == sort order
        assert r == sorted(r)
    assert all(len(i) == 26 for i in all_ids[:100])


def test_ids_from_two_generators_do_not_collide() -> None:
    a, b = IdGenerator(), IdGenerator()
    ids = [g.new_id() for _ in range(10_000) for g in (a, b)]
    assert len(set(ids)) == len(ids)


def test_every_record_kind_is_framed_and_named_by_the_queue() -> None:
    from memory._records import KIND_NAMES
    from memory.queue import _deadletter, _segments

    # A kind the journal cannot frame, or the dead-letter file cannot name, would be lost there.
    assert set(KIND_NAMES) == set(_segments.SCHEMAS) == set(_deadletter.KIND_NAMES)
    assert all(_deadletter.KIND_NAMES[k] == name for k, name in KIND_NAMES.items())
